from . import test_outbound_push
