//! Peer benchmark: the spotex core against the orderbook-rs crate on the same seeded order
//! flow (`spotex_core::flow`), each engine in its own timed loop over the already
//! translated stream, with the canonical report stream (trades and refusals) hashed to
//! prove both did the same thing.
//!
//! `cargo run --release --manifest-path bench/peers-rs/Cargo.toml -- [--orders N] [--runs R]
//! [--seed S] [--scenarios LIST] [--out PATH] [--reports DIR]`
//!
//! `python bench/bench_peers.py` runs this first, then the Python engines, and checks that
//! the report hashes agree across both languages.

mod orderbook;
mod report;
mod spotex;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use spotex_core::flow::{self, FlowCounts, FlowSpec, Scenario};

use report::{Line, Tally};

const USAGE: &str = "\
usage: spotex-peers-rs [--orders N] [--runs R] [--seed S] [--scenarios LIST] [--out PATH]
                       [--reports DIR]
  --orders N        new orders in each scenario's flow (default 1000000)
  --runs R          fresh-engine runs per engine and scenario (default 5)
  --seed S          flow seed (default 42)
  --scenarios LIST  comma-separated subset of calm,trending,volatile,crash (default all)
  --out PATH        JSON results; a relative path is taken from the repository root
                    (default bench/results/peers_rs.json)
  --reports DIR     also write each scenario's report text (spotex's) to DIR/SCENARIO.txt,
                    for finding where another engine's report differs";

/// Sellers in the flow (each with a cluster backing its asks).
const SELLERS: u32 = 4;

/// What the orderbook-rs adapter emulates; printed and written with the results.
const ADAPTER_NOTES: &[&str] = &[
    "order ids: orderbook-rs takes caller-chosen ids; Id::Sequential(stream id) is used directly",
    "GTC place: OrderType::Standard with TimeInForce::Gtc via add_order_with_committed",
    "IOC place: TimeInForce::Ioc (native; the dropped rest returns Err(InsufficientLiquidity) \
     carrying the trades made)",
    "cancel: cancel_order; Ok(None) (not resting) is a refusal",
    "amend: cancel_order + a new GTC order under the same id at the new price and quantity \
     (loses priority, may trade as taker); refused if the order is not live (cancel_order \
     returns Ok(None)); every amend in the flow moves the price, to a positive one, with a \
     positive quantity (asserted before timing)",
    "no self-trade prevention needed: buyers and sellers are distinct accounts",
];

struct Args {
    orders: usize,
    runs: usize,
    seed: u64,
    scenarios: Vec<Scenario>,
    out: PathBuf,
    reports: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let repo = repo_root();
    let mut args = Args {
        orders: 1_000_000,
        runs: 5,
        seed: 42,
        scenarios: Scenario::ALL.to_vec(),
        out: repo.join("bench/results/peers_rs.json"),
        reports: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || -> Result<u64, String> {
            value
                .replace('_', "")
                .parse()
                .map_err(|_| format!("{flag}: not a number: {value}"))
        };
        match flag.as_str() {
            "--orders" => args.orders = number()? as usize,
            "--runs" => args.runs = number()? as usize,
            "--seed" => args.seed = number()?,
            "--scenarios" => args.scenarios = scenarios(&value)?,
            "--out" => args.out = repo.join(&value),
            "--reports" => args.reports = Some(repo.join(&value)),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if args.orders == 0 || args.runs == 0 {
        return Err("--orders and --runs must be positive".into());
    }
    Ok(args)
}

/// `calm,crash` as the scenarios it names, in the order given.
fn scenarios(list: &str) -> Result<Vec<Scenario>, String> {
    let picked = list
        .split(',')
        .filter(|name| !name.is_empty())
        .map(|name| {
            Scenario::ALL
                .into_iter()
                .find(|s| s.name() == name)
                .ok_or(format!("--scenarios: unknown scenario {name}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if picked.is_empty() {
        return Err("--scenarios: none given".into());
    }
    Ok(picked)
}

/// The repository root: this crate lives in `bench/peers-rs`.
fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .nth(2)
        .expect("the crate sits two levels below the repository root")
        .to_path_buf()
}

/// Throughput of one engine on one scenario, over all runs.
#[derive(Default)]
struct Measured {
    msgs_per_sec: Vec<f64>,
    /// SHA-256 of the report; every run must reproduce it.
    hash: String,
    tally: Tally,
}

impl Measured {
    /// Adds a run that took `elapsed` and reported `lines`.
    fn record(&mut self, messages: usize, elapsed: Duration, lines: &[Line]) {
        self.msgs_per_sec
            .push(messages as f64 / elapsed.as_secs_f64());
        let hash = report::hash(lines);
        if self.hash.is_empty() {
            self.hash = hash;
            self.tally = report::tally(lines);
        } else {
            assert_eq!(self.hash, hash, "a run's report differs from the first's");
        }
    }

    fn median(&self) -> f64 {
        let mut v = self.msgs_per_sec.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }
    fn min(&self) -> f64 {
        self.msgs_per_sec
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
    }
    fn max(&self) -> f64 {
        self.msgs_per_sec.iter().copied().fold(0.0, f64::max)
    }
    fn to_json(&self, messages: usize) -> Value {
        json!({
            "messages": messages,
            "msgs_per_sec_runs": self.msgs_per_sec,
            "msgs_per_sec_median": self.median(),
            "msgs_per_sec_min": self.min(),
            "msgs_per_sec_max": self.max(),
            "report_sha256": self.hash,
            "trades": self.tally.trades,
            "refusals": self.tally.refusals,
        })
    }
}

struct ScenarioResult {
    scenario: Scenario,
    counts: FlowCounts,
    spotex: Measured,
    peer: Measured,
    /// Where the reports first differ, described; `None` when the hashes agree.
    difference: Option<String>,
}

impl ScenarioResult {
    fn ratio(&self) -> f64 {
        self.spotex.median() / self.peer.median()
    }
}

fn run_scenario(args: &Args, scenario: Scenario) -> ScenarioResult {
    let spec = FlowSpec {
        seed: args.seed,
        new_orders: args.orders,
        scenario,
        sellers: SELLERS,
    };
    let (records, counts) = flow::generate(&spec);
    let cmds = spotex::decode(&records);
    drop(records);
    let ops = orderbook::translate(&cmds);
    let messages = counts.messages;
    assert_eq!(cmds.len(), messages);

    // one output buffer per engine, sized once and reused by every run
    let mut spotex_lines = Vec::with_capacity(messages);
    let mut peer_lines = Vec::with_capacity(messages);
    let mut spotex = Measured::default();
    let mut peer = Measured::default();
    // the engines take turns, so a change in the machine's load hits both alike
    for _ in 0..args.runs {
        let elapsed = spotex::timed_run(&spec, &counts, &cmds, &mut spotex_lines);
        spotex.record(messages, elapsed, &spotex_lines);
        let elapsed = orderbook::timed_run(&ops, &mut peer_lines);
        peer.record(messages, elapsed, &peer_lines);
    }

    if let Some(dir) = &args.reports {
        let path = dir.join(format!("{}.txt", scenario.name()));
        std::fs::write(&path, report::text(&spotex_lines))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
    let difference = (spotex.hash != peer.hash).then(|| {
        let at = report::first_difference(&spotex_lines, &peer_lines)
            .expect("different hashes come from different reports");
        describe_difference(at, &spotex_lines, &peer_lines)
    });
    ScenarioResult {
        scenario,
        counts,
        spotex,
        peer,
        difference,
    }
}

/// The first differing report line with a little context from both reports.
fn describe_difference(at: usize, spotex: &[Line], peer: &[Line]) -> String {
    let show = |lines: &[Line], i: usize| {
        lines
            .get(i)
            .map_or_else(|| "(end of report)".to_string(), Line::text)
    };
    let mut s = format!("first differing report line: {at} (0-based)\n");
    for i in at.saturating_sub(3)..at + 3 {
        let mark = if i == at { ">" } else { " " };
        s += &format!(
            "  {mark} {i:>9}  spotex: {:<28} orderbook-rs: {}\n",
            show(spotex, i),
            show(peer, i)
        );
    }
    s
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn print_mix(results: &[ScenarioResult]) {
    println!("\nFlow mix (sellers {SELLERS}):");
    println!(
        "{:<10} {:>11} {:>9} {:>9} {:>10} {:>11} {:>11}",
        "scenario", "new orders", "IOC", "amends", "cancels", "dup cancels", "messages"
    );
    for r in results {
        let c = &r.counts;
        println!(
            "{:<10} {:>11} {:>9} {:>9} {:>10} {:>11} {:>11}",
            r.scenario.name(),
            thousands(c.new_orders as u64),
            thousands(c.ioc as u64),
            thousands(c.amends as u64),
            thousands(c.cancels as u64),
            thousands(c.duplicate_cancels as u64),
            thousands(c.messages as u64)
        );
    }
}

fn print_table(results: &[ScenarioResult], runs: usize) {
    println!("\nThroughput (msgs/s, {runs} runs each, fresh engine per run):");
    println!(
        "{:<10} {:>11}  {:<13} {:>13}  {:>25}  {:>16}",
        "scenario", "messages", "engine", "median", "min - max", "spotex/orderbook"
    );
    for r in results {
        for (name, m) in [("spotex", &r.spotex), ("orderbook-rs", &r.peer)] {
            let first = name == "spotex";
            println!(
                "{:<10} {:>11}  {:<13} {:>13}  {:>25}  {:>16}",
                if first { r.scenario.name() } else { "" },
                if first {
                    thousands(r.counts.messages as u64)
                } else {
                    String::new()
                },
                name,
                thousands(m.median() as u64),
                format!(
                    "{} - {}",
                    thousands(m.min() as u64),
                    thousands(m.max() as u64)
                ),
                if first {
                    String::new()
                } else {
                    format!("{:.2}x", r.ratio())
                },
            );
        }
    }
    let (spotex_worst, peer_worst) = worst(results);
    println!(
        "worst scenario: spotex {} ({} msgs/s), orderbook-rs {} ({} msgs/s); ratio of worst medians {:.2}x",
        spotex_worst.scenario.name(),
        thousands(spotex_worst.spotex.median() as u64),
        peer_worst.scenario.name(),
        thousands(peer_worst.peer.median() as u64),
        spotex_worst.spotex.median() / peer_worst.peer.median()
    );
}

/// The scenario with the lowest median, for spotex and for orderbook-rs.
fn worst(results: &[ScenarioResult]) -> (&ScenarioResult, &ScenarioResult) {
    let lowest = |f: fn(&ScenarioResult) -> f64| {
        results
            .iter()
            .min_by(|a, b| f(a).total_cmp(&f(b)))
            .expect("at least one scenario")
    };
    (lowest(|r| r.spotex.median()), lowest(|r| r.peer.median()))
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

fn rustc_version() -> Option<String> {
    let out = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The locked version of a dependency, read from this crate's Cargo.lock.
fn locked_version(name: &str) -> Option<String> {
    let lock =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock")).ok()?;
    let wanted = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    lines.find(|l| *l == wanted)?;
    let version = lines.next()?.strip_prefix("version = ")?;
    Some(version.trim_matches('"').to_string())
}

fn results_json(args: &Args, results: &[ScenarioResult], wall: Duration) -> Value {
    let scenarios: Vec<Value> = results
        .iter()
        .map(|r| {
            let c = &r.counts;
            json!({
                "name": r.scenario.name(),
                "mix": {
                    "new_orders": c.new_orders,
                    "ioc": c.ioc,
                    "amends": c.amends,
                    "cancels": c.cancels,
                    "duplicate_cancels": c.duplicate_cancels,
                    "messages": c.messages,
                },
                "engines": {
                    "spotex": r.spotex.to_json(c.messages),
                    "orderbook-rs": r.peer.to_json(c.messages),
                },
                "hashes_agree": r.difference.is_none(),
                "difference": r.difference,
                "ratio_spotex_over_orderbook_rs": r.ratio(),
            })
        })
        .collect();
    let (spotex_worst, peer_worst) = worst(results);
    json!({
        "benchmark": "peers-rs",
        "report_stream": "v1",
        "machine": {
            "cpu": cpu_model(),
            "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
            "rustc": rustc_version(),
        },
        "flow": {
            "seed": args.seed,
            "new_orders": args.orders,
            "sellers": SELLERS,
            "runs": args.runs,
            "scenarios": args.scenarios.iter().map(|s| s.name()).collect::<Vec<_>>(),
        },
        "peers": { "orderbook-rs": locked_version("orderbook-rs") },
        "adapter_notes": ADAPTER_NOTES,
        "scenarios": scenarios,
        "worst": {
            "spotex": { "scenario": spotex_worst.scenario.name(), "msgs_per_sec_median": spotex_worst.spotex.median() },
            "orderbook-rs": { "scenario": peer_worst.scenario.name(), "msgs_per_sec_median": peer_worst.peer.median() },
            "ratio_spotex_over_orderbook_rs": spotex_worst.spotex.median() / peer_worst.peer.median(),
        },
        "wall_seconds": wall.as_secs_f64(),
    })
}

fn main() {
    let wall = Instant::now();
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("{e}\n{USAGE}");
        std::process::exit(2);
    });
    let peer_version = locked_version("orderbook-rs").unwrap_or_else(|| "?".into());
    println!(
        "spotex vs orderbook-rs {peer_version}: {} new orders per scenario, seed {}, {} runs",
        thousands(args.orders as u64),
        args.seed,
        args.runs
    );
    println!("orderbook-rs adapter:");
    for note in ADAPTER_NOTES {
        println!("  - {note}");
    }

    if let Some(dir) = &args.reports {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    }
    let mut results = Vec::new();
    for &scenario in &args.scenarios {
        let started = Instant::now();
        let r = run_scenario(&args, scenario);
        match &r.difference {
            None => println!(
                "{:<9} report hashes agree: {} ({} trades, {} refusals) [{:.1}s]",
                scenario.name(),
                r.spotex.hash,
                thousands(r.spotex.tally.trades as u64),
                thousands(r.spotex.tally.refusals as u64),
                started.elapsed().as_secs_f64()
            ),
            Some(diff) => println!(
                "{:<9} report hashes DISAGREE: spotex {} ({} trades, {} refusals), \
                 orderbook-rs {} ({} trades, {} refusals)\n{diff}",
                scenario.name(),
                r.spotex.hash,
                r.spotex.tally.trades,
                r.spotex.tally.refusals,
                r.peer.hash,
                r.peer.tally.trades,
                r.peer.tally.refusals
            ),
        }
        results.push(r);
    }

    print_mix(&results);
    print_table(&results, args.runs);

    let json = results_json(&args, &results, wall.elapsed());
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir).expect("results directory");
    }
    let text = serde_json::to_string_pretty(&json).expect("JSON") + "\n";
    std::fs::write(&args.out, text).expect("write results");
    println!(
        "\nwrote {} (wall time {:.1}s)",
        args.out.display(),
        wall.elapsed().as_secs_f64()
    );
    if results.iter().any(|r| r.difference.is_some()) {
        std::process::exit(1);
    }
}
