from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Side(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIDE_UNSPECIFIED: _ClassVar[Side]
    SIDE_BUY: _ClassVar[Side]
    SIDE_SELL: _ClassVar[Side]

class OrderType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_TYPE_LIMIT: _ClassVar[OrderType]
    ORDER_TYPE_MARKET: _ClassVar[OrderType]

class TimeInForce(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIME_IN_FORCE_GTC: _ClassVar[TimeInForce]
    TIME_IN_FORCE_GTD: _ClassVar[TimeInForce]
    TIME_IN_FORCE_IOC: _ClassVar[TimeInForce]
    TIME_IN_FORCE_FOK: _ClassVar[TimeInForce]

class SelfTradePrevention(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STP_CANCEL_NEWEST: _ClassVar[SelfTradePrevention]
    STP_CANCEL_OLDEST: _ClassVar[SelfTradePrevention]
    STP_CANCEL_BOTH: _ClassVar[SelfTradePrevention]

class Locality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOCALITY_UNSPECIFIED: _ClassVar[Locality]
    LOCALITY_NODE: _ClassVar[Locality]
    LOCALITY_NVLINK_DOMAIN: _ClassVar[Locality]
    LOCALITY_RACK: _ClassVar[Locality]
    LOCALITY_BLOCK: _ClassVar[Locality]
    LOCALITY_CLUSTER: _ClassVar[Locality]

class OrderState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_STATE_UNSPECIFIED: _ClassVar[OrderState]
    ORDER_STATE_OPEN: _ClassVar[OrderState]
    ORDER_STATE_PARTIALLY_FILLED: _ClassVar[OrderState]
    ORDER_STATE_FILLED: _ClassVar[OrderState]
    ORDER_STATE_CANCELLED: _ClassVar[OrderState]
    ORDER_STATE_EXPIRED: _ClassVar[OrderState]
    ORDER_STATE_REJECTED: _ClassVar[OrderState]

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_BUYER: _ClassVar[Role]
    ROLE_SELLER: _ClassVar[Role]
    ROLE_OPERATOR: _ClassVar[Role]

class TransferKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSFER_KIND_UNSPECIFIED: _ClassVar[TransferKind]
    DEPOSIT: _ClassVar[TransferKind]
    WITHDRAWAL: _ClassVar[TransferKind]
    TRADE: _ClassVar[TransferKind]
    FEE: _ClassVar[TransferKind]
    MOVE_OUT: _ClassVar[TransferKind]
    MOVE_IN: _ClassVar[TransferKind]

class MoveStep(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MOVE_STEP_UNSPECIFIED: _ClassVar[MoveStep]
    MOVE_STEP_OUT: _ClassVar[MoveStep]
    MOVE_STEP_IN: _ClassVar[MoveStep]
    MOVE_STEP_LANDED: _ClassVar[MoveStep]
SIDE_UNSPECIFIED: Side
SIDE_BUY: Side
SIDE_SELL: Side
ORDER_TYPE_LIMIT: OrderType
ORDER_TYPE_MARKET: OrderType
TIME_IN_FORCE_GTC: TimeInForce
TIME_IN_FORCE_GTD: TimeInForce
TIME_IN_FORCE_IOC: TimeInForce
TIME_IN_FORCE_FOK: TimeInForce
STP_CANCEL_NEWEST: SelfTradePrevention
STP_CANCEL_OLDEST: SelfTradePrevention
STP_CANCEL_BOTH: SelfTradePrevention
LOCALITY_UNSPECIFIED: Locality
LOCALITY_NODE: Locality
LOCALITY_NVLINK_DOMAIN: Locality
LOCALITY_RACK: Locality
LOCALITY_BLOCK: Locality
LOCALITY_CLUSTER: Locality
ORDER_STATE_UNSPECIFIED: OrderState
ORDER_STATE_OPEN: OrderState
ORDER_STATE_PARTIALLY_FILLED: OrderState
ORDER_STATE_FILLED: OrderState
ORDER_STATE_CANCELLED: OrderState
ORDER_STATE_EXPIRED: OrderState
ORDER_STATE_REJECTED: OrderState
ROLE_UNSPECIFIED: Role
ROLE_BUYER: Role
ROLE_SELLER: Role
ROLE_OPERATOR: Role
TRANSFER_KIND_UNSPECIFIED: TransferKind
DEPOSIT: TransferKind
WITHDRAWAL: TransferKind
TRADE: TransferKind
FEE: TransferKind
MOVE_OUT: TransferKind
MOVE_IN: TransferKind
MOVE_STEP_UNSPECIFIED: MoveStep
MOVE_STEP_OUT: MoveStep
MOVE_STEP_IN: MoveStep
MOVE_STEP_LANDED: MoveStep

class Product(_message.Message):
    __slots__ = ("product_id", "state", "tick_micros", "lot", "open_at_micros", "close_at_micros")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TICK_MICROS_FIELD_NUMBER: _ClassVar[int]
    LOT_FIELD_NUMBER: _ClassVar[int]
    OPEN_AT_MICROS_FIELD_NUMBER: _ClassVar[int]
    CLOSE_AT_MICROS_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    state: str
    tick_micros: int
    lot: int
    open_at_micros: int
    close_at_micros: int
    def __init__(self, product_id: _Optional[str] = ..., state: _Optional[str] = ..., tick_micros: _Optional[int] = ..., lot: _Optional[int] = ..., open_at_micros: _Optional[int] = ..., close_at_micros: _Optional[int] = ...) -> None: ...

class ListProductsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListProductsResponse(_message.Message):
    __slots__ = ("products", "next_page_token")
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    products: _containers.RepeatedCompositeFieldContainer[Product]
    next_page_token: str
    def __init__(self, products: _Optional[_Iterable[_Union[Product, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("node_id", "gpus", "block", "rack", "nvlink_domain")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    RACK_FIELD_NUMBER: _ClassVar[int]
    NVLINK_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    gpus: int
    block: str
    rack: str
    nvlink_domain: str
    def __init__(self, node_id: _Optional[str] = ..., gpus: _Optional[int] = ..., block: _Optional[str] = ..., rack: _Optional[str] = ..., nvlink_domain: _Optional[str] = ...) -> None: ...

class RegisterCapacityRequest(_message.Message):
    __slots__ = ("cluster_id", "sku", "region", "nodes", "from_hour", "to_hour")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    FROM_HOUR_FIELD_NUMBER: _ClassVar[int]
    TO_HOUR_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    sku: str
    region: str
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    from_hour: int
    to_hour: int
    def __init__(self, cluster_id: _Optional[str] = ..., sku: _Optional[str] = ..., region: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., from_hour: _Optional[int] = ..., to_hour: _Optional[int] = ...) -> None: ...

class RegisterCapacityResponse(_message.Message):
    __slots__ = ("cluster_id",)
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    def __init__(self, cluster_id: _Optional[str] = ...) -> None: ...

class WithdrawCapacityRequest(_message.Message):
    __slots__ = ("cluster_id", "from_hour", "to_hour", "node_ids")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_HOUR_FIELD_NUMBER: _ClassVar[int]
    TO_HOUR_FIELD_NUMBER: _ClassVar[int]
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    from_hour: int
    to_hour: int
    node_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cluster_id: _Optional[str] = ..., from_hour: _Optional[int] = ..., to_hour: _Optional[int] = ..., node_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class WithdrawCapacityResponse(_message.Message):
    __slots__ = ("gpu_hours_withdrawn",)
    GPU_HOURS_WITHDRAWN_FIELD_NUMBER: _ClassVar[int]
    gpu_hours_withdrawn: int
    def __init__(self, gpu_hours_withdrawn: _Optional[int] = ...) -> None: ...

class PlaceOrderRequest(_message.Message):
    __slots__ = ("client_order_id", "product_id", "side", "order_type", "price_micros", "quantity", "time_in_force", "expire_at_micros", "post_only", "stp", "cluster_id", "gang", "hours", "window_hours", "min_quantity", "range_id", "display_quantity", "locality", "locality_preferred", "colocate_with", "resell_trade_id", "resell_gpus", "resale_fee_bps", "auction")
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    ORDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_AT_MICROS_FIELD_NUMBER: _ClassVar[int]
    POST_ONLY_FIELD_NUMBER: _ClassVar[int]
    STP_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    GANG_FIELD_NUMBER: _ClassVar[int]
    HOURS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_HOURS_FIELD_NUMBER: _ClassVar[int]
    MIN_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    RANGE_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_PREFERRED_FIELD_NUMBER: _ClassVar[int]
    COLOCATE_WITH_FIELD_NUMBER: _ClassVar[int]
    RESELL_TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    RESELL_GPUS_FIELD_NUMBER: _ClassVar[int]
    RESALE_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    AUCTION_FIELD_NUMBER: _ClassVar[int]
    client_order_id: str
    product_id: str
    side: Side
    order_type: OrderType
    price_micros: int
    quantity: int
    time_in_force: TimeInForce
    expire_at_micros: int
    post_only: bool
    stp: SelfTradePrevention
    cluster_id: str
    gang: int
    hours: int
    window_hours: int
    min_quantity: int
    range_id: int
    display_quantity: int
    locality: Locality
    locality_preferred: bool
    colocate_with: int
    resell_trade_id: int
    resell_gpus: _containers.RepeatedCompositeFieldContainer[Slot]
    resale_fee_bps: int
    auction: bool
    def __init__(self, client_order_id: _Optional[str] = ..., product_id: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., order_type: _Optional[_Union[OrderType, str]] = ..., price_micros: _Optional[int] = ..., quantity: _Optional[int] = ..., time_in_force: _Optional[_Union[TimeInForce, str]] = ..., expire_at_micros: _Optional[int] = ..., post_only: _Optional[bool] = ..., stp: _Optional[_Union[SelfTradePrevention, str]] = ..., cluster_id: _Optional[str] = ..., gang: _Optional[int] = ..., hours: _Optional[int] = ..., window_hours: _Optional[int] = ..., min_quantity: _Optional[int] = ..., range_id: _Optional[int] = ..., display_quantity: _Optional[int] = ..., locality: _Optional[_Union[Locality, str]] = ..., locality_preferred: _Optional[bool] = ..., colocate_with: _Optional[int] = ..., resell_trade_id: _Optional[int] = ..., resell_gpus: _Optional[_Iterable[_Union[Slot, _Mapping]]] = ..., resale_fee_bps: _Optional[int] = ..., auction: _Optional[bool] = ...) -> None: ...

class Fill(_message.Message):
    __slots__ = ("trade_id", "price_micros", "quantity", "maker", "time_micros", "product_id", "fee_micros", "auction_id")
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    MAKER_FIELD_NUMBER: _ClassVar[int]
    TIME_MICROS_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    FEE_MICROS_FIELD_NUMBER: _ClassVar[int]
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    trade_id: int
    price_micros: int
    quantity: int
    maker: bool
    time_micros: int
    product_id: str
    fee_micros: int
    auction_id: int
    def __init__(self, trade_id: _Optional[int] = ..., price_micros: _Optional[int] = ..., quantity: _Optional[int] = ..., maker: _Optional[bool] = ..., time_micros: _Optional[int] = ..., product_id: _Optional[str] = ..., fee_micros: _Optional[int] = ..., auction_id: _Optional[int] = ...) -> None: ...

class Order(_message.Message):
    __slots__ = ("order_id", "client_order_id", "product_id", "side", "order_type", "price_micros", "quantity", "filled_quantity", "remaining_quantity", "state", "time_in_force", "cluster_id", "gang", "fills", "created_at_micros", "reason", "hours", "window_hours", "min_quantity", "range_id", "display_quantity", "locality", "locality_preferred", "colocate_with", "placed_level", "placed_domain", "resell_trade_id", "resale_fee_bps", "fees_micros", "auction")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    ORDER_TYPE_FIELD_NUMBER: _ClassVar[int]
    PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    FILLED_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    REMAINING_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    GANG_FIELD_NUMBER: _ClassVar[int]
    FILLS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MICROS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    HOURS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_HOURS_FIELD_NUMBER: _ClassVar[int]
    MIN_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    RANGE_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_PREFERRED_FIELD_NUMBER: _ClassVar[int]
    COLOCATE_WITH_FIELD_NUMBER: _ClassVar[int]
    PLACED_LEVEL_FIELD_NUMBER: _ClassVar[int]
    PLACED_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    RESELL_TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    RESALE_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    FEES_MICROS_FIELD_NUMBER: _ClassVar[int]
    AUCTION_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    client_order_id: str
    product_id: str
    side: Side
    order_type: OrderType
    price_micros: int
    quantity: int
    filled_quantity: int
    remaining_quantity: int
    state: OrderState
    time_in_force: TimeInForce
    cluster_id: str
    gang: int
    fills: _containers.RepeatedCompositeFieldContainer[Fill]
    created_at_micros: int
    reason: str
    hours: int
    window_hours: int
    min_quantity: int
    range_id: int
    display_quantity: int
    locality: Locality
    locality_preferred: bool
    colocate_with: int
    placed_level: Locality
    placed_domain: str
    resell_trade_id: int
    resale_fee_bps: int
    fees_micros: int
    auction: bool
    def __init__(self, order_id: _Optional[int] = ..., client_order_id: _Optional[str] = ..., product_id: _Optional[str] = ..., side: _Optional[_Union[Side, str]] = ..., order_type: _Optional[_Union[OrderType, str]] = ..., price_micros: _Optional[int] = ..., quantity: _Optional[int] = ..., filled_quantity: _Optional[int] = ..., remaining_quantity: _Optional[int] = ..., state: _Optional[_Union[OrderState, str]] = ..., time_in_force: _Optional[_Union[TimeInForce, str]] = ..., cluster_id: _Optional[str] = ..., gang: _Optional[int] = ..., fills: _Optional[_Iterable[_Union[Fill, _Mapping]]] = ..., created_at_micros: _Optional[int] = ..., reason: _Optional[str] = ..., hours: _Optional[int] = ..., window_hours: _Optional[int] = ..., min_quantity: _Optional[int] = ..., range_id: _Optional[int] = ..., display_quantity: _Optional[int] = ..., locality: _Optional[_Union[Locality, str]] = ..., locality_preferred: _Optional[bool] = ..., colocate_with: _Optional[int] = ..., placed_level: _Optional[_Union[Locality, str]] = ..., placed_domain: _Optional[str] = ..., resell_trade_id: _Optional[int] = ..., resale_fee_bps: _Optional[int] = ..., fees_micros: _Optional[int] = ..., auction: _Optional[bool] = ...) -> None: ...

class PlaceOrderResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: Order
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ...) -> None: ...

class CancelOrderRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    def __init__(self, order_id: _Optional[int] = ...) -> None: ...

class CancelOrderResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: Order
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ...) -> None: ...

class AmendOrderRequest(_message.Message):
    __slots__ = ("order_id", "price_micros", "quantity")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    price_micros: int
    quantity: int
    def __init__(self, order_id: _Optional[int] = ..., price_micros: _Optional[int] = ..., quantity: _Optional[int] = ...) -> None: ...

class AmendOrderResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: Order
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ...) -> None: ...

class GetOrderRequest(_message.Message):
    __slots__ = ("order_id", "client_order_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    client_order_id: str
    def __init__(self, order_id: _Optional[int] = ..., client_order_id: _Optional[str] = ...) -> None: ...

class GetOrderResponse(_message.Message):
    __slots__ = ("order",)
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order: Order
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ...) -> None: ...

class ListOrdersRequest(_message.Message):
    __slots__ = ("product_id", "open_only", "page_size", "page_token")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    OPEN_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    open_only: bool
    page_size: int
    page_token: str
    def __init__(self, product_id: _Optional[str] = ..., open_only: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListOrdersResponse(_message.Message):
    __slots__ = ("orders", "next_page_token")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[Order]
    next_page_token: str
    def __init__(self, orders: _Optional[_Iterable[_Union[Order, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Level(_message.Message):
    __slots__ = ("price_micros", "quantity", "orders")
    PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    price_micros: int
    quantity: int
    orders: int
    def __init__(self, price_micros: _Optional[int] = ..., quantity: _Optional[int] = ..., orders: _Optional[int] = ...) -> None: ...

class GetBookRequest(_message.Message):
    __slots__ = ("product_id", "depth")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    depth: int
    def __init__(self, product_id: _Optional[str] = ..., depth: _Optional[int] = ...) -> None: ...

class Book(_message.Message):
    __slots__ = ("product_id", "sequence", "bids", "asks")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    ASKS_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    sequence: int
    bids: _containers.RepeatedCompositeFieldContainer[Level]
    asks: _containers.RepeatedCompositeFieldContainer[Level]
    def __init__(self, product_id: _Optional[str] = ..., sequence: _Optional[int] = ..., bids: _Optional[_Iterable[_Union[Level, _Mapping]]] = ..., asks: _Optional[_Iterable[_Union[Level, _Mapping]]] = ...) -> None: ...

class GetBookResponse(_message.Message):
    __slots__ = ("book",)
    BOOK_FIELD_NUMBER: _ClassVar[int]
    book: Book
    def __init__(self, book: _Optional[_Union[Book, _Mapping]] = ...) -> None: ...

class Slot(_message.Message):
    __slots__ = ("node_id", "gpu_indices", "block", "rack", "nvlink_domain")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GPU_INDICES_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    RACK_FIELD_NUMBER: _ClassVar[int]
    NVLINK_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    gpu_indices: _containers.RepeatedScalarFieldContainer[int]
    block: str
    rack: str
    nvlink_domain: str
    def __init__(self, node_id: _Optional[str] = ..., gpu_indices: _Optional[_Iterable[int]] = ..., block: _Optional[str] = ..., rack: _Optional[str] = ..., nvlink_domain: _Optional[str] = ...) -> None: ...

class Allocation(_message.Message):
    __slots__ = ("trade_id", "product_id", "cluster_id", "hour", "buy_order_id", "sell_order_id", "price_micros", "quantity", "slots", "as_buyer", "buyer_account", "parent_trade_id", "fee_micros", "seller_account", "as_provider", "provider_account")
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    HOUR_FIELD_NUMBER: _ClassVar[int]
    BUY_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    SELL_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    AS_BUYER_FIELD_NUMBER: _ClassVar[int]
    BUYER_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    PARENT_TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    FEE_MICROS_FIELD_NUMBER: _ClassVar[int]
    SELLER_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AS_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    trade_id: int
    product_id: str
    cluster_id: str
    hour: int
    buy_order_id: int
    sell_order_id: int
    price_micros: int
    quantity: int
    slots: _containers.RepeatedCompositeFieldContainer[Slot]
    as_buyer: bool
    buyer_account: int
    parent_trade_id: int
    fee_micros: int
    seller_account: int
    as_provider: bool
    provider_account: int
    def __init__(self, trade_id: _Optional[int] = ..., product_id: _Optional[str] = ..., cluster_id: _Optional[str] = ..., hour: _Optional[int] = ..., buy_order_id: _Optional[int] = ..., sell_order_id: _Optional[int] = ..., price_micros: _Optional[int] = ..., quantity: _Optional[int] = ..., slots: _Optional[_Iterable[_Union[Slot, _Mapping]]] = ..., as_buyer: _Optional[bool] = ..., buyer_account: _Optional[int] = ..., parent_trade_id: _Optional[int] = ..., fee_micros: _Optional[int] = ..., seller_account: _Optional[int] = ..., as_provider: _Optional[bool] = ..., provider_account: _Optional[int] = ...) -> None: ...

class ListAllocationsRequest(_message.Message):
    __slots__ = ("product_id", "page_size", "page_token")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    page_size: int
    page_token: str
    def __init__(self, product_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAllocationsResponse(_message.Message):
    __slots__ = ("allocations", "next_page_token")
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    allocations: _containers.RepeatedCompositeFieldContainer[Allocation]
    next_page_token: str
    def __init__(self, allocations: _Optional[_Iterable[_Union[Allocation, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StreamMarketDataRequest(_message.Message):
    __slots__ = ("product_ids",)
    PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    product_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, product_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class LevelUpdate(_message.Message):
    __slots__ = ("side", "price_micros", "quantity", "orders")
    SIDE_FIELD_NUMBER: _ClassVar[int]
    PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    side: Side
    price_micros: int
    quantity: int
    orders: int
    def __init__(self, side: _Optional[_Union[Side, str]] = ..., price_micros: _Optional[int] = ..., quantity: _Optional[int] = ..., orders: _Optional[int] = ...) -> None: ...

class Trade(_message.Message):
    __slots__ = ("trade_id", "price_micros", "quantity", "aggressor", "time_micros", "auction_id")
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AGGRESSOR_FIELD_NUMBER: _ClassVar[int]
    TIME_MICROS_FIELD_NUMBER: _ClassVar[int]
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    trade_id: int
    price_micros: int
    quantity: int
    aggressor: Side
    time_micros: int
    auction_id: int
    def __init__(self, trade_id: _Optional[int] = ..., price_micros: _Optional[int] = ..., quantity: _Optional[int] = ..., aggressor: _Optional[_Union[Side, str]] = ..., time_micros: _Optional[int] = ..., auction_id: _Optional[int] = ...) -> None: ...

class MarketData(_message.Message):
    __slots__ = ("product_id", "sequence", "snapshot", "level", "trade", "state", "auction")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    TRADE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AUCTION_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    sequence: int
    snapshot: Book
    level: LevelUpdate
    trade: Trade
    state: str
    auction: AuctionPrint
    def __init__(self, product_id: _Optional[str] = ..., sequence: _Optional[int] = ..., snapshot: _Optional[_Union[Book, _Mapping]] = ..., level: _Optional[_Union[LevelUpdate, _Mapping]] = ..., trade: _Optional[_Union[Trade, _Mapping]] = ..., state: _Optional[str] = ..., auction: _Optional[_Union[AuctionPrint, _Mapping]] = ...) -> None: ...

class AuctionPrint(_message.Message):
    __slots__ = ("auction_id", "price_micros", "quantity", "time_micros")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TIME_MICROS_FIELD_NUMBER: _ClassVar[int]
    auction_id: int
    price_micros: int
    quantity: int
    time_micros: int
    def __init__(self, auction_id: _Optional[int] = ..., price_micros: _Optional[int] = ..., quantity: _Optional[int] = ..., time_micros: _Optional[int] = ...) -> None: ...

class MarketDataBatch(_message.Message):
    __slots__ = ("updates",)
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[MarketData]
    def __init__(self, updates: _Optional[_Iterable[_Union[MarketData, _Mapping]]] = ...) -> None: ...

class StreamExecutionsRequest(_message.Message):
    __slots__ = ("from_sequence",)
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    from_sequence: int
    def __init__(self, from_sequence: _Optional[int] = ...) -> None: ...

class Execution(_message.Message):
    __slots__ = ("sequence", "kind", "order", "fill", "allocation", "block", "auction_id")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    FILL_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    kind: str
    order: Order
    fill: Fill
    allocation: Allocation
    block: BlockAllocation
    auction_id: int
    def __init__(self, sequence: _Optional[int] = ..., kind: _Optional[str] = ..., order: _Optional[_Union[Order, _Mapping]] = ..., fill: _Optional[_Union[Fill, _Mapping]] = ..., allocation: _Optional[_Union[Allocation, _Mapping]] = ..., block: _Optional[_Union[BlockAllocation, _Mapping]] = ..., auction_id: _Optional[int] = ...) -> None: ...

class BlockAllocation(_message.Message):
    __slots__ = ("order_id", "cluster_id", "first_hour", "hours", "slots", "cost_micros", "trade_ids", "placed_level", "placed_domain", "provider_account")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_HOUR_FIELD_NUMBER: _ClassVar[int]
    HOURS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    TRADE_IDS_FIELD_NUMBER: _ClassVar[int]
    PLACED_LEVEL_FIELD_NUMBER: _ClassVar[int]
    PLACED_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    cluster_id: str
    first_hour: int
    hours: int
    slots: _containers.RepeatedCompositeFieldContainer[Slot]
    cost_micros: int
    trade_ids: _containers.RepeatedScalarFieldContainer[int]
    placed_level: Locality
    placed_domain: str
    provider_account: int
    def __init__(self, order_id: _Optional[int] = ..., cluster_id: _Optional[str] = ..., first_hour: _Optional[int] = ..., hours: _Optional[int] = ..., slots: _Optional[_Iterable[_Union[Slot, _Mapping]]] = ..., cost_micros: _Optional[int] = ..., trade_ids: _Optional[_Iterable[int]] = ..., placed_level: _Optional[_Union[Locality, str]] = ..., placed_domain: _Optional[str] = ..., provider_account: _Optional[int] = ...) -> None: ...

class ExecutionBatch(_message.Message):
    __slots__ = ("executions", "start")
    EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    executions: _containers.RepeatedCompositeFieldContainer[Execution]
    start: ExecutionStreamStart
    def __init__(self, executions: _Optional[_Iterable[_Union[Execution, _Mapping]]] = ..., start: _Optional[_Union[ExecutionStreamStart, _Mapping]] = ...) -> None: ...

class ExecutionStreamStart(_message.Message):
    __slots__ = ("from_sequence", "live_from_sequence", "oldest_kept")
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LIVE_FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    OLDEST_KEPT_FIELD_NUMBER: _ClassVar[int]
    from_sequence: int
    live_from_sequence: int
    oldest_kept: int
    def __init__(self, from_sequence: _Optional[int] = ..., live_from_sequence: _Optional[int] = ..., oldest_kept: _Optional[int] = ...) -> None: ...

class SubmitOrdersRequest(_message.Message):
    __slots__ = ("orders",)
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[PlaceOrderRequest]
    def __init__(self, orders: _Optional[_Iterable[_Union[PlaceOrderRequest, _Mapping]]] = ...) -> None: ...

class OrderResult(_message.Message):
    __slots__ = ("order", "code", "reason", "message")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    order: Order
    code: int
    reason: str
    message: str
    def __init__(self, order: _Optional[_Union[Order, _Mapping]] = ..., code: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class SubmitOrdersResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[OrderResult]
    def __init__(self, results: _Optional[_Iterable[_Union[OrderResult, _Mapping]]] = ...) -> None: ...

class CancelAllRequest(_message.Message):
    __slots__ = ("product_id", "range_id")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    RANGE_ID_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    range_id: int
    def __init__(self, product_id: _Optional[str] = ..., range_id: _Optional[int] = ...) -> None: ...

class PlaceOneOfRequest(_message.Message):
    __slots__ = ("alternatives", "client_order_id")
    ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    alternatives: _containers.RepeatedCompositeFieldContainer[PlaceOrderRequest]
    client_order_id: str
    def __init__(self, alternatives: _Optional[_Iterable[_Union[PlaceOrderRequest, _Mapping]]] = ..., client_order_id: _Optional[str] = ...) -> None: ...

class PlaceBasketRequest(_message.Message):
    __slots__ = ("legs",)
    LEGS_FIELD_NUMBER: _ClassVar[int]
    legs: _containers.RepeatedCompositeFieldContainer[PlaceOrderRequest]
    def __init__(self, legs: _Optional[_Iterable[_Union[PlaceOrderRequest, _Mapping]]] = ...) -> None: ...

class PlaceAskRangeRequest(_message.Message):
    __slots__ = ("ask", "hours")
    ASK_FIELD_NUMBER: _ClassVar[int]
    HOURS_FIELD_NUMBER: _ClassVar[int]
    ask: PlaceOrderRequest
    hours: int
    def __init__(self, ask: _Optional[_Union[PlaceOrderRequest, _Mapping]] = ..., hours: _Optional[int] = ...) -> None: ...

class CancelAllResponse(_message.Message):
    __slots__ = ("orders",)
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[Order]
    def __init__(self, orders: _Optional[_Iterable[_Union[Order, _Mapping]]] = ...) -> None: ...

class ResellRequest(_message.Message):
    __slots__ = ("order_id", "from_hour", "to_hour", "gpus", "price_micros", "time_in_force", "expire_at_micros", "client_order_id")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_HOUR_FIELD_NUMBER: _ClassVar[int]
    TO_HOUR_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_AT_MICROS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    from_hour: int
    to_hour: int
    gpus: _containers.RepeatedCompositeFieldContainer[Slot]
    price_micros: int
    time_in_force: TimeInForce
    expire_at_micros: int
    client_order_id: str
    def __init__(self, order_id: _Optional[int] = ..., from_hour: _Optional[int] = ..., to_hour: _Optional[int] = ..., gpus: _Optional[_Iterable[_Union[Slot, _Mapping]]] = ..., price_micros: _Optional[int] = ..., time_in_force: _Optional[_Union[TimeInForce, str]] = ..., expire_at_micros: _Optional[int] = ..., client_order_id: _Optional[str] = ...) -> None: ...

class AuctionPrice(_message.Message):
    __slots__ = ("product_id", "price_micros", "quantity")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    price_micros: int
    quantity: int
    def __init__(self, product_id: _Optional[str] = ..., price_micros: _Optional[int] = ..., quantity: _Optional[int] = ...) -> None: ...

class AuctionResult(_message.Message):
    __slots__ = ("auction_id", "from_hour", "to_hour", "started_at_micros", "cleared_at_micros", "state", "prices", "welfare_micros", "gap", "solve_micros", "bids", "filled_orders", "dropped_orders", "paradoxically_rejected", "rejected_welfare_micros", "first_come_welfare_micros")
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_HOUR_FIELD_NUMBER: _ClassVar[int]
    TO_HOUR_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_MICROS_FIELD_NUMBER: _ClassVar[int]
    CLEARED_AT_MICROS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    WELFARE_MICROS_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    SOLVE_MICROS_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    FILLED_ORDERS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_ORDERS_FIELD_NUMBER: _ClassVar[int]
    PARADOXICALLY_REJECTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_WELFARE_MICROS_FIELD_NUMBER: _ClassVar[int]
    FIRST_COME_WELFARE_MICROS_FIELD_NUMBER: _ClassVar[int]
    auction_id: int
    from_hour: int
    to_hour: int
    started_at_micros: int
    cleared_at_micros: int
    state: str
    prices: _containers.RepeatedCompositeFieldContainer[AuctionPrice]
    welfare_micros: int
    gap: float
    solve_micros: int
    bids: int
    filled_orders: _containers.RepeatedScalarFieldContainer[int]
    dropped_orders: _containers.RepeatedScalarFieldContainer[int]
    paradoxically_rejected: _containers.RepeatedScalarFieldContainer[int]
    rejected_welfare_micros: int
    first_come_welfare_micros: int
    def __init__(self, auction_id: _Optional[int] = ..., from_hour: _Optional[int] = ..., to_hour: _Optional[int] = ..., started_at_micros: _Optional[int] = ..., cleared_at_micros: _Optional[int] = ..., state: _Optional[str] = ..., prices: _Optional[_Iterable[_Union[AuctionPrice, _Mapping]]] = ..., welfare_micros: _Optional[int] = ..., gap: _Optional[float] = ..., solve_micros: _Optional[int] = ..., bids: _Optional[int] = ..., filled_orders: _Optional[_Iterable[int]] = ..., dropped_orders: _Optional[_Iterable[int]] = ..., paradoxically_rejected: _Optional[_Iterable[int]] = ..., rejected_welfare_micros: _Optional[int] = ..., first_come_welfare_micros: _Optional[int] = ...) -> None: ...

class GetAuctionResultRequest(_message.Message):
    __slots__ = ("auction_id",)
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    auction_id: int
    def __init__(self, auction_id: _Optional[int] = ...) -> None: ...

class GetIndicativeAuctionRequest(_message.Message):
    __slots__ = ("from_hour", "to_hour")
    FROM_HOUR_FIELD_NUMBER: _ClassVar[int]
    TO_HOUR_FIELD_NUMBER: _ClassVar[int]
    from_hour: int
    to_hour: int
    def __init__(self, from_hour: _Optional[int] = ..., to_hour: _Optional[int] = ...) -> None: ...

class IndicativeOrder(_message.Message):
    __slots__ = ("order_id", "quantity")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    order_id: int
    quantity: int
    def __init__(self, order_id: _Optional[int] = ..., quantity: _Optional[int] = ...) -> None: ...

class IndicativeAuction(_message.Message):
    __slots__ = ("from_hour", "to_hour", "computed_at_micros", "prices", "welfare_micros", "gap", "bids", "your_orders")
    FROM_HOUR_FIELD_NUMBER: _ClassVar[int]
    TO_HOUR_FIELD_NUMBER: _ClassVar[int]
    COMPUTED_AT_MICROS_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    WELFARE_MICROS_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    YOUR_ORDERS_FIELD_NUMBER: _ClassVar[int]
    from_hour: int
    to_hour: int
    computed_at_micros: int
    prices: _containers.RepeatedCompositeFieldContainer[AuctionPrice]
    welfare_micros: int
    gap: float
    bids: int
    your_orders: _containers.RepeatedCompositeFieldContainer[IndicativeOrder]
    def __init__(self, from_hour: _Optional[int] = ..., to_hour: _Optional[int] = ..., computed_at_micros: _Optional[int] = ..., prices: _Optional[_Iterable[_Union[AuctionPrice, _Mapping]]] = ..., welfare_micros: _Optional[int] = ..., gap: _Optional[float] = ..., bids: _Optional[int] = ..., your_orders: _Optional[_Iterable[_Union[IndicativeOrder, _Mapping]]] = ...) -> None: ...

class ListAuctionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAuctionsResponse(_message.Message):
    __slots__ = ("auctions", "next_page_token")
    AUCTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    auctions: _containers.RepeatedCompositeFieldContainer[AuctionResult]
    next_page_token: str
    def __init__(self, auctions: _Optional[_Iterable[_Union[AuctionResult, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class TapeTrade(_message.Message):
    __slots__ = ("trade_id", "product_id", "price_micros", "quantity", "aggressor", "time_micros", "auction_id")
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    AGGRESSOR_FIELD_NUMBER: _ClassVar[int]
    TIME_MICROS_FIELD_NUMBER: _ClassVar[int]
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    trade_id: int
    product_id: str
    price_micros: int
    quantity: int
    aggressor: Side
    time_micros: int
    auction_id: int
    def __init__(self, trade_id: _Optional[int] = ..., product_id: _Optional[str] = ..., price_micros: _Optional[int] = ..., quantity: _Optional[int] = ..., aggressor: _Optional[_Union[Side, str]] = ..., time_micros: _Optional[int] = ..., auction_id: _Optional[int] = ...) -> None: ...

class ListTradesRequest(_message.Message):
    __slots__ = ("product_id", "sku", "region", "from_micros", "to_micros", "page_size", "page_token")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    FROM_MICROS_FIELD_NUMBER: _ClassVar[int]
    TO_MICROS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    sku: str
    region: str
    from_micros: int
    to_micros: int
    page_size: int
    page_token: str
    def __init__(self, product_id: _Optional[str] = ..., sku: _Optional[str] = ..., region: _Optional[str] = ..., from_micros: _Optional[int] = ..., to_micros: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTradesResponse(_message.Message):
    __slots__ = ("trades", "next_page_token")
    TRADES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    trades: _containers.RepeatedCompositeFieldContainer[TapeTrade]
    next_page_token: str
    def __init__(self, trades: _Optional[_Iterable[_Union[TapeTrade, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Candle(_message.Message):
    __slots__ = ("start_micros", "open_price_micros", "high_price_micros", "low_price_micros", "close_price_micros", "volume", "trades", "vwap_micros")
    START_MICROS_FIELD_NUMBER: _ClassVar[int]
    OPEN_PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    HIGH_PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    LOW_PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    CLOSE_PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    VWAP_MICROS_FIELD_NUMBER: _ClassVar[int]
    start_micros: int
    open_price_micros: int
    high_price_micros: int
    low_price_micros: int
    close_price_micros: int
    volume: int
    trades: int
    vwap_micros: int
    def __init__(self, start_micros: _Optional[int] = ..., open_price_micros: _Optional[int] = ..., high_price_micros: _Optional[int] = ..., low_price_micros: _Optional[int] = ..., close_price_micros: _Optional[int] = ..., volume: _Optional[int] = ..., trades: _Optional[int] = ..., vwap_micros: _Optional[int] = ...) -> None: ...

class ListCandlesRequest(_message.Message):
    __slots__ = ("product_id", "sku", "region", "interval", "from_micros", "to_micros", "page_size", "page_token")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    FROM_MICROS_FIELD_NUMBER: _ClassVar[int]
    TO_MICROS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    sku: str
    region: str
    interval: str
    from_micros: int
    to_micros: int
    page_size: int
    page_token: str
    def __init__(self, product_id: _Optional[str] = ..., sku: _Optional[str] = ..., region: _Optional[str] = ..., interval: _Optional[str] = ..., from_micros: _Optional[int] = ..., to_micros: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCandlesResponse(_message.Message):
    __slots__ = ("candles", "next_page_token")
    CANDLES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    candles: _containers.RepeatedCompositeFieldContainer[Candle]
    next_page_token: str
    def __init__(self, candles: _Optional[_Iterable[_Union[Candle, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetCurveRequest(_message.Message):
    __slots__ = ("sku", "region", "from_hour", "to_hour")
    SKU_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    FROM_HOUR_FIELD_NUMBER: _ClassVar[int]
    TO_HOUR_FIELD_NUMBER: _ClassVar[int]
    sku: str
    region: str
    from_hour: int
    to_hour: int
    def __init__(self, sku: _Optional[str] = ..., region: _Optional[str] = ..., from_hour: _Optional[int] = ..., to_hour: _Optional[int] = ...) -> None: ...

class CurvePoint(_message.Message):
    __slots__ = ("product_id", "hour", "state", "best_bid_micros", "bid_quantity", "best_ask_micros", "ask_quantity", "last_price_micros", "last_quantity", "last_time_micros", "auction_id", "auction_price_micros", "auction_quantity", "volume", "trades")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    HOUR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BEST_BID_MICROS_FIELD_NUMBER: _ClassVar[int]
    BID_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    BEST_ASK_MICROS_FIELD_NUMBER: _ClassVar[int]
    ASK_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LAST_PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    LAST_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LAST_TIME_MICROS_FIELD_NUMBER: _ClassVar[int]
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    AUCTION_PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    AUCTION_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    hour: int
    state: str
    best_bid_micros: int
    bid_quantity: int
    best_ask_micros: int
    ask_quantity: int
    last_price_micros: int
    last_quantity: int
    last_time_micros: int
    auction_id: int
    auction_price_micros: int
    auction_quantity: int
    volume: int
    trades: int
    def __init__(self, product_id: _Optional[str] = ..., hour: _Optional[int] = ..., state: _Optional[str] = ..., best_bid_micros: _Optional[int] = ..., bid_quantity: _Optional[int] = ..., best_ask_micros: _Optional[int] = ..., ask_quantity: _Optional[int] = ..., last_price_micros: _Optional[int] = ..., last_quantity: _Optional[int] = ..., last_time_micros: _Optional[int] = ..., auction_id: _Optional[int] = ..., auction_price_micros: _Optional[int] = ..., auction_quantity: _Optional[int] = ..., volume: _Optional[int] = ..., trades: _Optional[int] = ...) -> None: ...

class Curve(_message.Message):
    __slots__ = ("sku", "region", "as_of_micros", "points")
    SKU_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    AS_OF_MICROS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    sku: str
    region: str
    as_of_micros: int
    points: _containers.RepeatedCompositeFieldContainer[CurvePoint]
    def __init__(self, sku: _Optional[str] = ..., region: _Optional[str] = ..., as_of_micros: _Optional[int] = ..., points: _Optional[_Iterable[_Union[CurvePoint, _Mapping]]] = ...) -> None: ...

class DailyIndex(_message.Message):
    __slots__ = ("sku", "region", "day", "status", "price_micros", "volume", "trades", "excluded_volume", "excluded_trades", "median_micros", "published_at_micros", "revision", "previous_price_micros", "previous_status", "methodology")
    SKU_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    TRADES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_VOLUME_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_TRADES_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_MICROS_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_AT_MICROS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_PRICE_MICROS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATUS_FIELD_NUMBER: _ClassVar[int]
    METHODOLOGY_FIELD_NUMBER: _ClassVar[int]
    sku: str
    region: str
    day: str
    status: str
    price_micros: int
    volume: int
    trades: int
    excluded_volume: int
    excluded_trades: int
    median_micros: int
    published_at_micros: int
    revision: int
    previous_price_micros: int
    previous_status: str
    methodology: str
    def __init__(self, sku: _Optional[str] = ..., region: _Optional[str] = ..., day: _Optional[str] = ..., status: _Optional[str] = ..., price_micros: _Optional[int] = ..., volume: _Optional[int] = ..., trades: _Optional[int] = ..., excluded_volume: _Optional[int] = ..., excluded_trades: _Optional[int] = ..., median_micros: _Optional[int] = ..., published_at_micros: _Optional[int] = ..., revision: _Optional[int] = ..., previous_price_micros: _Optional[int] = ..., previous_status: _Optional[str] = ..., methodology: _Optional[str] = ...) -> None: ...

class GetIndexRequest(_message.Message):
    __slots__ = ("sku", "region", "day")
    SKU_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    sku: str
    region: str
    day: str
    def __init__(self, sku: _Optional[str] = ..., region: _Optional[str] = ..., day: _Optional[str] = ...) -> None: ...

class ListIndexRequest(_message.Message):
    __slots__ = ("sku", "region", "from_day", "to_day", "page_size", "page_token")
    SKU_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    FROM_DAY_FIELD_NUMBER: _ClassVar[int]
    TO_DAY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sku: str
    region: str
    from_day: str
    to_day: str
    page_size: int
    page_token: str
    def __init__(self, sku: _Optional[str] = ..., region: _Optional[str] = ..., from_day: _Optional[str] = ..., to_day: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListIndexResponse(_message.Message):
    __slots__ = ("days", "next_page_token")
    DAYS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    days: _containers.RepeatedCompositeFieldContainer[DailyIndex]
    next_page_token: str
    def __init__(self, days: _Optional[_Iterable[_Union[DailyIndex, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateProductsRequest(_message.Message):
    __slots__ = ("skus", "regions", "from_hour", "to_hour", "tick_micros", "lot", "gate_closure_lead_micros", "open_at_micros")
    SKUS_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    FROM_HOUR_FIELD_NUMBER: _ClassVar[int]
    TO_HOUR_FIELD_NUMBER: _ClassVar[int]
    TICK_MICROS_FIELD_NUMBER: _ClassVar[int]
    LOT_FIELD_NUMBER: _ClassVar[int]
    GATE_CLOSURE_LEAD_MICROS_FIELD_NUMBER: _ClassVar[int]
    OPEN_AT_MICROS_FIELD_NUMBER: _ClassVar[int]
    skus: _containers.RepeatedScalarFieldContainer[str]
    regions: _containers.RepeatedScalarFieldContainer[str]
    from_hour: int
    to_hour: int
    tick_micros: int
    lot: int
    gate_closure_lead_micros: int
    open_at_micros: int
    def __init__(self, skus: _Optional[_Iterable[str]] = ..., regions: _Optional[_Iterable[str]] = ..., from_hour: _Optional[int] = ..., to_hour: _Optional[int] = ..., tick_micros: _Optional[int] = ..., lot: _Optional[int] = ..., gate_closure_lead_micros: _Optional[int] = ..., open_at_micros: _Optional[int] = ...) -> None: ...

class CreateProductsResponse(_message.Message):
    __slots__ = ("products", "existing")
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    products: _containers.RepeatedCompositeFieldContainer[Product]
    existing: _containers.RepeatedCompositeFieldContainer[Product]
    def __init__(self, products: _Optional[_Iterable[_Union[Product, _Mapping]]] = ..., existing: _Optional[_Iterable[_Union[Product, _Mapping]]] = ...) -> None: ...

class CreateAccountRequest(_message.Message):
    __slots__ = ("name", "roles")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    name: str
    roles: _containers.RepeatedScalarFieldContainer[Role]
    def __init__(self, name: _Optional[str] = ..., roles: _Optional[_Iterable[_Union[Role, str]]] = ...) -> None: ...

class CreateAccountResponse(_message.Message):
    __slots__ = ("account_id", "token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: int
    token: str
    def __init__(self, account_id: _Optional[int] = ..., token: _Optional[str] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("account_id", "name", "roles", "enabled", "has_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    HAS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: int
    name: str
    roles: _containers.RepeatedScalarFieldContainer[Role]
    enabled: bool
    has_token: bool
    def __init__(self, account_id: _Optional[int] = ..., name: _Optional[str] = ..., roles: _Optional[_Iterable[_Union[Role, str]]] = ..., enabled: _Optional[bool] = ..., has_token: _Optional[bool] = ...) -> None: ...

class AccountRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: int
    def __init__(self, account_id: _Optional[int] = ...) -> None: ...

class AccountResponse(_message.Message):
    __slots__ = ("account", "cancelled")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    account: Account
    cancelled: _containers.RepeatedCompositeFieldContainer[Order]
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ..., cancelled: _Optional[_Iterable[_Union[Order, _Mapping]]] = ...) -> None: ...

class RotateTokenResponse(_message.Message):
    __slots__ = ("account", "token")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    account: Account
    token: str
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ..., token: _Optional[str] = ...) -> None: ...

class ListAccountsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAccountsResponse(_message.Message):
    __slots__ = ("accounts", "next_page_token")
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[Account]
    next_page_token: str
    def __init__(self, accounts: _Optional[_Iterable[_Union[Account, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Balance(_message.Message):
    __slots__ = ("account_id", "current_micros", "holds_micros", "available_micros", "credit_limit_micros", "maker_fee_bps", "taker_fee_bps", "in_transit_micros")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENT_MICROS_FIELD_NUMBER: _ClassVar[int]
    HOLDS_MICROS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_MICROS_FIELD_NUMBER: _ClassVar[int]
    CREDIT_LIMIT_MICROS_FIELD_NUMBER: _ClassVar[int]
    MAKER_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    TAKER_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    IN_TRANSIT_MICROS_FIELD_NUMBER: _ClassVar[int]
    account_id: int
    current_micros: int
    holds_micros: int
    available_micros: int
    credit_limit_micros: int
    maker_fee_bps: int
    taker_fee_bps: int
    in_transit_micros: int
    def __init__(self, account_id: _Optional[int] = ..., current_micros: _Optional[int] = ..., holds_micros: _Optional[int] = ..., available_micros: _Optional[int] = ..., credit_limit_micros: _Optional[int] = ..., maker_fee_bps: _Optional[int] = ..., taker_fee_bps: _Optional[int] = ..., in_transit_micros: _Optional[int] = ...) -> None: ...

class Transfer(_message.Message):
    __slots__ = ("transfer_id", "debit_account_id", "credit_account_id", "amount_micros", "kind", "order_id", "trade_id", "time_micros", "reference")
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    DEBIT_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CREDIT_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MICROS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    TRADE_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_MICROS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    transfer_id: int
    debit_account_id: int
    credit_account_id: int
    amount_micros: int
    kind: TransferKind
    order_id: int
    trade_id: int
    time_micros: int
    reference: str
    def __init__(self, transfer_id: _Optional[int] = ..., debit_account_id: _Optional[int] = ..., credit_account_id: _Optional[int] = ..., amount_micros: _Optional[int] = ..., kind: _Optional[_Union[TransferKind, str]] = ..., order_id: _Optional[int] = ..., trade_id: _Optional[int] = ..., time_micros: _Optional[int] = ..., reference: _Optional[str] = ...) -> None: ...

class DepositRequest(_message.Message):
    __slots__ = ("account_id", "amount_micros", "reference")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MICROS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    account_id: int
    amount_micros: int
    reference: str
    def __init__(self, account_id: _Optional[int] = ..., amount_micros: _Optional[int] = ..., reference: _Optional[str] = ...) -> None: ...

class WithdrawRequest(_message.Message):
    __slots__ = ("account_id", "amount_micros", "reference")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MICROS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    account_id: int
    amount_micros: int
    reference: str
    def __init__(self, account_id: _Optional[int] = ..., amount_micros: _Optional[int] = ..., reference: _Optional[str] = ...) -> None: ...

class SetCreditLimitRequest(_message.Message):
    __slots__ = ("account_id", "credit_limit_micros")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CREDIT_LIMIT_MICROS_FIELD_NUMBER: _ClassVar[int]
    account_id: int
    credit_limit_micros: int
    def __init__(self, account_id: _Optional[int] = ..., credit_limit_micros: _Optional[int] = ...) -> None: ...

class SetFeesRequest(_message.Message):
    __slots__ = ("account_id", "maker_fee_bps", "taker_fee_bps", "clear")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    MAKER_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    TAKER_FEE_BPS_FIELD_NUMBER: _ClassVar[int]
    CLEAR_FIELD_NUMBER: _ClassVar[int]
    account_id: int
    maker_fee_bps: int
    taker_fee_bps: int
    clear: bool
    def __init__(self, account_id: _Optional[int] = ..., maker_fee_bps: _Optional[int] = ..., taker_fee_bps: _Optional[int] = ..., clear: _Optional[bool] = ...) -> None: ...

class BalanceResponse(_message.Message):
    __slots__ = ("balance", "transfer")
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_FIELD_NUMBER: _ClassVar[int]
    balance: Balance
    transfer: Transfer
    def __init__(self, balance: _Optional[_Union[Balance, _Mapping]] = ..., transfer: _Optional[_Union[Transfer, _Mapping]] = ...) -> None: ...

class MoveMoneyRequest(_message.Message):
    __slots__ = ("step", "account_id", "amount_micros", "other_shard", "number")
    STEP_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MICROS_FIELD_NUMBER: _ClassVar[int]
    OTHER_SHARD_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    step: MoveStep
    account_id: int
    amount_micros: int
    other_shard: int
    number: int
    def __init__(self, step: _Optional[_Union[MoveStep, str]] = ..., account_id: _Optional[int] = ..., amount_micros: _Optional[int] = ..., other_shard: _Optional[int] = ..., number: _Optional[int] = ...) -> None: ...

class Move(_message.Message):
    __slots__ = ("to_shard", "number", "account_id", "amount_micros", "time_micros")
    TO_SHARD_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MICROS_FIELD_NUMBER: _ClassVar[int]
    TIME_MICROS_FIELD_NUMBER: _ClassVar[int]
    to_shard: int
    number: int
    account_id: int
    amount_micros: int
    time_micros: int
    def __init__(self, to_shard: _Optional[int] = ..., number: _Optional[int] = ..., account_id: _Optional[int] = ..., amount_micros: _Optional[int] = ..., time_micros: _Optional[int] = ...) -> None: ...

class MoveMoneyResponse(_message.Message):
    __slots__ = ("balance", "move", "already")
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    MOVE_FIELD_NUMBER: _ClassVar[int]
    ALREADY_FIELD_NUMBER: _ClassVar[int]
    balance: Balance
    move: Move
    already: bool
    def __init__(self, balance: _Optional[_Union[Balance, _Mapping]] = ..., move: _Optional[_Union[Move, _Mapping]] = ..., already: _Optional[bool] = ...) -> None: ...

class ListMovesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShardMark(_message.Message):
    __slots__ = ("shard", "number")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    shard: int
    number: int
    def __init__(self, shard: _Optional[int] = ..., number: _Optional[int] = ...) -> None: ...

class ListMovesResponse(_message.Message):
    __slots__ = ("pending", "landed")
    PENDING_FIELD_NUMBER: _ClassVar[int]
    LANDED_FIELD_NUMBER: _ClassVar[int]
    pending: _containers.RepeatedCompositeFieldContainer[Move]
    landed: _containers.RepeatedCompositeFieldContainer[ShardMark]
    def __init__(self, pending: _Optional[_Iterable[_Union[Move, _Mapping]]] = ..., landed: _Optional[_Iterable[_Union[ShardMark, _Mapping]]] = ...) -> None: ...

class GetBalanceRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: int
    def __init__(self, account_id: _Optional[int] = ...) -> None: ...

class ListTransfersRequest(_message.Message):
    __slots__ = ("account_id", "from_micros", "to_micros", "page_size", "page_token")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_MICROS_FIELD_NUMBER: _ClassVar[int]
    TO_MICROS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    account_id: int
    from_micros: int
    to_micros: int
    page_size: int
    page_token: str
    def __init__(self, account_id: _Optional[int] = ..., from_micros: _Optional[int] = ..., to_micros: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTransfersResponse(_message.Message):
    __slots__ = ("transfers", "next_page_token")
    TRANSFERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    transfers: _containers.RepeatedCompositeFieldContainer[Transfer]
    next_page_token: str
    def __init__(self, transfers: _Optional[_Iterable[_Union[Transfer, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ProductRequest(_message.Message):
    __slots__ = ("product_id",)
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    def __init__(self, product_id: _Optional[str] = ...) -> None: ...

class ProductResponse(_message.Message):
    __slots__ = ("product",)
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    product: Product
    def __init__(self, product: _Optional[_Union[Product, _Mapping]] = ...) -> None: ...

class RunAuctionRequest(_message.Message):
    __slots__ = ("from_hour", "to_hour", "time_limit_ms", "auction_id")
    FROM_HOUR_FIELD_NUMBER: _ClassVar[int]
    TO_HOUR_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_MS_FIELD_NUMBER: _ClassVar[int]
    AUCTION_ID_FIELD_NUMBER: _ClassVar[int]
    from_hour: int
    to_hour: int
    time_limit_ms: int
    auction_id: int
    def __init__(self, from_hour: _Optional[int] = ..., to_hour: _Optional[int] = ..., time_limit_ms: _Optional[int] = ..., auction_id: _Optional[int] = ...) -> None: ...

class GetStateHashRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TakeSnapshotRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStateHashResponse(_message.Message):
    __slots__ = ("sequence", "state_hash")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STATE_HASH_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    state_hash: str
    def __init__(self, sequence: _Optional[int] = ..., state_hash: _Optional[str] = ...) -> None: ...
