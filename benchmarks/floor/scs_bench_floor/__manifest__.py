# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
{
    "name": "Stock Channel Sync: benchmark floor routes",
    "summary": "Two do-nothing webhook routes that bound what any intake can reach",
    "version": "19.0.1.0.0",
    "category": "Hidden",
    "license": "LGPL-3",
    "author": "stock_channel_sync",
    "depends": ["base"],
    "data": ["security/ir.model.access.csv"],
    "installable": True,
}
