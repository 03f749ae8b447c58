# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
{
    "name": "Stock Channel Sync",
    "summary": "Real-time, exactly-once stock sync between Odoo and sales channels",
    "version": "19.0.1.0.0",
    "category": "Inventory/Inventory",
    "author": "stock_channel_sync contributors",
    "license": "LGPL-3",
    "application": False,
    "installable": True,
    "depends": ["stock", "queue_job", "mail"],
    "external_dependencies": {"python": ["requests", "cryptography"]},
    "data": [
        "security/stock_channel_sync_security.xml",
        "security/ir.model.access.csv",
        "data/queue_job_data.xml",
        "data/ir_cron_data.xml",
        "views/sync_channel_views.xml",
        "views/channel_binding_views.xml",
        "views/sync_event_views.xml",
        "views/product_views.xml",
        "views/wizard_views.xml",
        "views/sync_dashboard_views.xml",
        "views/sync_reconcile_pass_views.xml",
        "views/menus.xml",
    ],
    "assets": {
        "web.assets_tests": [
            "stock_channel_sync/static/tests/tours/*.js",
        ],
    },
    "demo": ["data/demo/stock_channel_sync_demo.xml"],
    "uninstall_hook": "uninstall_hook",
}
