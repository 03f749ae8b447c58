# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Shared fixtures: a warehouse with stock, generic channels on local simulators."""

import time

from odoo.tests.common import TransactionCase

from odoo.addons.queue_job.job import Job
from odoo.addons.queue_job.jobrunner.channels import ChannelManager
from odoo.addons.queue_job.tests.common import trap_jobs

from ..simulators.generic import GenericSimulator


class SyncCaseMixin:
    """Helpers shared by the transaction and HTTP test cases."""

    @classmethod
    def _scs_setup_stock(cls):
        cls.env = cls.env(context=dict(cls.env.context, tracking_disable=True))
        # tests push the same SKU many times within a second; the burst
        # interval has tests of its own that set it back
        cls.env["ir.config_parameter"].sudo().set_param(
            "stock_channel_sync.min_push_interval", "0"
        )
        cls.warehouse = cls.env["stock.warehouse"].search(
            [("company_id", "=", cls.env.company.id)], limit=1
        )
        cls.stock = cls.warehouse.lot_stock_id
        cls.customers = cls.env.ref("stock.stock_location_customers")
        Product = cls.env["product.product"]
        cls.product_a = Product.create(
            {
                "name": "Sync Mug",
                "default_code": "SCS-MUG",
                "type": "consu",
                "is_storable": True,
            }
        )
        cls.product_b = Product.create(
            {
                "name": "Sync Cap",
                "default_code": "SCS-CAP",
                "type": "consu",
                "is_storable": True,
            }
        )
        cls.unbound = Product.create(
            {
                "name": "Unbound",
                "default_code": "SCS-NONE",
                "type": "consu",
                "is_storable": True,
            }
        )
        with trap_jobs():
            for product, qty in (
                (cls.product_a, 10),
                (cls.product_b, 5),
                (cls.unbound, 7),
            ):
                cls.env["stock.quant"]._update_available_quantity(
                    product, cls.stock, qty
                )
            cls.env.cr.flush()

    def start_simulator(self, **kwargs):
        sim = GenericSimulator(**kwargs).start()
        self.addCleanup(sim.stop)
        return sim

    def make_channel(self, sim=None, **vals):
        values = {
            "name": f"Channel {vals.get('channel_type', 'generic')}",
            "channel_type": "generic",
            "warehouse_ids": [(6, 0, self.warehouse.ids)],
            "timeout": 2.0,
            "max_retries": 3,
        }
        if sim is not None:
            values.update(base_url=sim.endpoint, signing_secret=sim.secret)
        values.update(vals)
        return self.env["sync.channel"].create(values)

    def bind(self, channel, product, **vals):
        """A binding, without running the push its creation enqueues."""
        with trap_jobs():
            binding = self.env["channel.binding"].create(
                {"channel_id": channel.id, "product_id": product.id, **vals}
            )
            self.env.cr.flush()
        self.discard_jobs()
        return binding

    # -- jobs: real queue.job rows, run in-process ------------------------------
    SYNC_METHODS = (
        "_scs_job_push_sku",
        "_scs_job_push_binding",
        "_scs_job_push_corrections",
        "_scs_job_push_batch",
        "_scs_job_complete_listings",
        "_scs_job_apply",
        "_scs_job_apply_inbound",
        "_scs_job_reconcile_start",
        "_scs_job_reconcile_batch",
        "_scs_job_poll_orders",
    )

    def sync_jobs(self, method=None, states=("pending",)):
        domain = [("state", "in", list(states))]
        domain.append(
            ("method_name", "=", method)
            if method
            else ("method_name", "in", list(self.SYNC_METHODS))
        )
        return self.env["queue.job"].search(domain, order="id")

    def run_jobs(self, method=None, rounds=5):
        """Perform the waiting sync jobs (eta ignored), as the runner would."""
        done = 0
        for _round in range(rounds):
            records = self.sync_jobs(method)
            if not records:
                break
            for record in records:
                job = Job.load(self.env, record.uuid)
                job.perform()
                job.set_done()
                job.store()
                done += 1
            self.env.cr.flush()
        return done

    def gc_events(self):
        """Run retention as Odoo's autovacuum does: call again while it
        answers that something remains. The rows deleted in all."""
        total = 0
        for _call in range(1000):
            deleted, remaining = self.env["sync.event"]._gc_sync_events()
            total += deleted
            if not remaining:
                return total
        raise AssertionError("retention never finished")

    def runner_starts(
        self, jobs, config="root:2,root.channel_sync:2,root.channel_sync.reconcile:1"
    ):
        """The uuids of ``jobs`` (in the order they were enqueued) that
        queue_job's own scheduler starts first, configured as the README
        advises."""
        manager = ChannelManager()
        manager.simple_configure(config)
        for seq, job in enumerate(jobs):
            manager.notify(
                self.env.cr.dbname,
                job.channel,
                job.uuid,
                seq,
                job.date_created,
                job.priority,
                None,
                "pending",
            )
        return [job.uuid for job in manager.get_jobs_to_run(time.time())]

    def discard_jobs(self):
        self.sync_jobs(states=("pending", "enqueued")).unlink()

    def commit_point(self):
        """Run the pre-commit hooks, as a commit would (jobs are enqueued there)."""
        self.env.cr.flush()

    def move_stock(self, product, qty, location=None):
        self.env["stock.quant"]._update_available_quantity(
            product, location or self.stock, qty
        )

    def jobs_of(self, trap, method_name):
        return [j for j in trap.enqueued_jobs if j.method_name == method_name]


class SyncCase(SyncCaseMixin, TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._scs_setup_stock()
