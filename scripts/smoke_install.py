"""An installed spotex, used as a user would: a server started from the install and an
SDK round trip against it (products, accounts, capacity, an ask, a bid that fills, the
buyer's GPUs). Run by scripts/check_install.sh with the fresh environment's Python, from
outside the checkout, so nothing but the installed package is imported."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import spotex
from spotex.client import Client
from spotex.tools.testing import ServerProcess

TOKEN = "smoke-operator"


def extras_stay_out() -> None:
    """The base install is what a trader needs; charts, numpy and the load generator's
    histograms are extras, and a command that needs one says which."""
    for module in ("numpy", "matplotlib", "hdrh"):
        assert importlib.util.find_spec(module) is None, f"{module} is in the base install"
    spotex_cmd = str(Path(sys.executable).with_name("spotex"))
    out = subprocess.run([spotex_cmd, "bench"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    assert "pip install 'spotex[bench]'" in out.stderr, out.stderr


def main() -> None:
    assert "site-packages" in (spotex.__file__ or ""), f"not the installed spotex: {spotex}"
    extras_stay_out()
    with tempfile.TemporaryDirectory(prefix="spotex-smoke-") as data:
        server = ServerProcess(data, TOKEN, "--web-listen", "127.0.0.1:0")
        try:
            # the web page ships in the wheel and the server serves it
            port = re.search(r"web page on http://127\.0\.0\.1:(\d+)/", server.text())
            assert port, server.text()
            page = urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/", timeout=10)
            assert b"<title>spotex</title>" in page.read()
            op = Client(server.target, TOKEN)
            h = int(time.time()) // 3600 + 3
            pid = op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=h,
                                     to_hour=h + 1, tick="0.01")[0].product_id
            seller = Client(server.target, op.create_account("neocloud", ["seller"]).token)
            buyer = Client(server.target, op.create_account("startup", ["buyer"]).token)
            seller.register_capacity("iad-1", sku="H100-SXM", region="us-east",
                                     nodes=[("n0", 8), ("n1", 8)], from_hour=h, to_hour=h + 1)
            seller.place_order(pid, "sell", "2.10", 16, cluster_id="iad-1")
            order = buyer.place_order(pid, "buy", "2.20", 8, gang=8)
            assert order.state == "filled", order
            (alloc,) = buyer.list_allocations(pid)
            assert alloc.quantity == 8 and len(alloc.slots) == 1, alloc
            node, gpus = alloc.slots[0]
            print(f"installed spotex {spotex.__file__}: order {order.order_id} filled at "
                  f"{order.fills[0].price}, GPUs {node}{list(gpus)}")
        finally:
            code = server.stop()
    if code != 0:
        sys.exit(f"the server exited with {code}:\n{server.text()}")


if __name__ == "__main__":
    main()
