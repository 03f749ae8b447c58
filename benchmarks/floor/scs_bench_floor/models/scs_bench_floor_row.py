# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
from odoo import fields, models


class ScsBenchFloorRow(models.Model):
    """One row per delivery to ``/scs_bench_floor/insert``: the least a
    durable, idempotent webhook intake can write (a key and the body)."""

    _name = "scs.bench.floor.row"
    _description = "Benchmark floor delivery"

    key = fields.Char(required=True)
    body = fields.Text()

    _key_uniq = models.UniqueIndex("(key)")
