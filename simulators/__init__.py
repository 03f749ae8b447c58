"""Local HTTP simulators of the marketplaces, for tests, benchmarks and the demo.

They follow each API's documented contract (status codes, rate-limit headers,
pagination, batch sizes) and listen on loopback only. ``python -m simulators``
starts one of each (see ``__main__.py``).
"""

import importlib

#: channel type -> (module, class name)
SIMULATORS = {
    "generic": ("generic", "GenericSimulator"),
    "shopify": ("shopify", "ShopifySimulator"),
    "woocommerce": ("woocommerce", "WooCommerceSimulator"),
    "amazon": ("amazon", "AmazonSimulator"),
    "ebay": ("ebay", "EbaySimulator"),
}


def get_simulator_class(channel_type):
    module_name, class_name = SIMULATORS[channel_type]
    module = importlib.import_module(f".{module_name}", __name__)
    return getattr(module, class_name)
