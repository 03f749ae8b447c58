"""Channel adapters, one module per marketplace, looked up by channel type."""

import importlib

from .base import (
    AuthenticationError,
    ChannelAdapter,
    ChannelConfig,
    ChannelError,
    ChannelOrder,
    InboundEvent,
    LiveLevel,
    OrderLine,
    PermanentChannelError,
    PushResult,
    RateLimitedError,
    RetryableChannelError,
    NewerSequenceError,
    StaleQuantityError,
    StockUpdate,
    UnreachableError,
    check_inbound,
    json_depth_exceeds,
    wait_budget,
)

#: channel type -> (module, class name); modules load on first use
ADAPTERS = {
    "generic": ("generic", "GenericAdapter"),
    "shopify": ("shopify", "ShopifyAdapter"),
    "woocommerce": ("woocommerce", "WooCommerceAdapter"),
    "amazon": ("amazon", "AmazonAdapter"),
    "ebay": ("ebay", "EbayAdapter"),
}


def get_adapter_class(channel_type):
    """Return the adapter class for a channel type, or raise KeyError."""
    module_name, class_name = ADAPTERS[channel_type]
    module = importlib.import_module(f".{module_name}", __name__)
    return getattr(module, class_name)
