"""Amazon Selling Partner API on loopback: LWA, Listings Items, Feeds, Orders, Sellers.

What it follows (selling-partner-api-models, SP-API docs):

- ``POST /auth/o2/token`` (LWA, form encoded, ``grant_type=refresh_token``)
  issues tokens that expire after ``token_ttl`` seconds; ``invalid_grant`` /
  ``invalid_client`` errors as LWA words them.
- Every SP-API call needs ``x-amz-access-token``; a missing, unknown or
  expired token is answered 403 ``Unauthorized`` with the details SP-API
  gives ("The access token you provided has expired.").
- Each operation has a token bucket with the published rate and burst
  (``rate_limits`` overrides them, ``{}`` turns them off); an empty bucket is
  a 429 ``QuotaExceeded`` carrying ``x-amzn-RateLimit-Limit``, which every
  answer of a metered operation carries too.
- ``patchListingsItem`` answers ``ACCEPTED`` or ``INVALID`` with ``issues``;
  ``searchListingsItems`` pages 20 at most, by ``pageToken``, and only
  through the first 1,000 results; ``getListingsItem`` reads one SKU.
- Feeds: ``createFeedDocument`` returns an upload URL served here (a stand-in
  for the presigned S3 URL), ``createFeed`` queues a ``JSON_LISTINGS_FEED``
  that is processed at once or after ``feed_polls_to_done`` ``getFeed``
  polls; a feed of more than 25,000 messages ends ``FATAL``. The processing
  report is served here too, gzipped when ``compress_reports``.
- Orders 2026-01-01 ``searchOrders`` (items in each order, ``paginationToken``
  pages) and the deprecated Orders v0 (``NextToken`` pages, order items);
  marketplace participations.

Issue codes the simulator invents for its own refusals start with
``SIMULATOR_``; Amazon's own codes for these cases were not published.
"""

import base64
import gzip
import itertools
import json
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, unquote

from .base import RateBucket, Response, TokenSimulator, parse_iso

TOKEN_PATH = "/auth/o2/token"
FEEDS = "/feeds/2021-06-30"
ORDER_ITEMS = "/orders/v0/orders/([^/]+)/orderItems"
PARTICIPATIONS = "/sellers/v1/marketplaceParticipations"
PARTICIPATIONS_OP = "getMarketplaceParticipations"
MAX_FEED_MESSAGES = 25_000
MAX_PAGE_SIZE = 20
SEARCH_RESULT_CAP = 1000
MAX_ORDERS_PER_PAGE = 100
#: published (rate per second, burst) of the operations served here
RATE_LIMITS = {
    "patchListingsItem": (5.0, 5),
    "getListingsItem": (5.0, 10),
    "searchListingsItems": (5.0, 5),
    "createFeedDocument": (0.5, 15),
    "createFeed": (5 / 300, 5),
    "getFeed": (2.0, 15),
    "getFeedDocument": (0.0222, 10),
    "getOrders": (0.0167, 20),
    "getOrderItems": (0.5, 30),
    "searchOrders": (0.0056, 20),
    "getMarketplaceParticipations": (0.016, 15),
}
#: Orders v0 ``OrderStatus`` -> Orders 2026-01-01 ``fulfillmentStatus``
FULFILLMENT_STATUS = {
    "PendingAvailability": "PENDING_AVAILABILITY",
    "Pending": "PENDING",
    "Unshipped": "UNSHIPPED",
    "PartiallyShipped": "PARTIALLY_SHIPPED",
    "Shipped": "SHIPPED",
    "Canceled": "CANCELLED",
    "Unfulfillable": "UNFULFILLABLE",
}
FULFILLED_BY = {"MFN": "MERCHANT", "AFN": "AMAZON"}
INCLUDED_DATA = {
    "BUYER",
    "RECIPIENT",
    "PROCEEDS",
    "EXPENSE",
    "PROMOTION",
    "CANCELLATION",
    "FULFILLMENT",
    "PACKAGES",
    "TAX",
    "PAYMENT",
    "FULFILLMENT_ORDERS",
}


def iso(moment):
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def errors(status, code, message, details="", headers=None):
    body = {"errors": [{"code": code, "message": message, "details": details}]}
    return Response(status, body, dict(headers or {}))


def denied(details):
    return errors(
        403, "Unauthorized", "Access to requested resource is denied.", details
    )


def issue(code, message, attribute="fulfillment_availability"):
    return {
        "code": code,
        "message": message,
        "severity": "ERROR",
        "attributeNames": [attribute],
        "categories": ["INVALID_ATTRIBUTE"],
    }


def _page_size(query, name):
    """The orders page size asked for (v0 and 2026-01-01 name it apart);
    ``None`` when it is not 1 to ``MAX_ORDERS_PER_PAGE``."""
    try:
        size = int(query.get(name, MAX_ORDERS_PER_PAGE))
    except ValueError:
        return None
    return size if 1 <= size <= MAX_ORDERS_PER_PAGE else None


class AmazonSimulator(TokenSimulator):
    """SP-API for one seller in one marketplace."""

    name = "amazon"

    def __init__(
        self,
        host="127.0.0.1",
        port=0,
        seed=None,
        *,
        token_ttl=3600.0,
        rate_limits=None,
        feed_polls_to_done=0,
        compress_reports=False,
        clock=time.time,
    ):
        super().__init__(
            host=host, port=port, seed=seed, token_ttl=token_ttl, clock=clock
        )
        self.client_id = "amzn1.application-oa2-client.simulator"
        self.client_secret = "simulator-client-secret"
        self.refresh_token = "Atzr|simulator-refresh-token"
        self.seller_id = "A1SIMULATORSELLER"
        self.marketplace_id = "ATVPDKIKX0DER"
        self.feed_polls_to_done = feed_polls_to_done
        self.compress_reports = compress_reports
        #: SKU -> {"asin", "productType", "createdDate", "lastUpdatedDate"}
        self.listings = {}
        #: SKU -> reason: PATCH and feed messages for it are refused
        self.rejected = {}
        self.orders = {}
        self.feeds = {}
        self.documents = {}
        self.order_items_page_size = 20
        self._ids = itertools.count(1)
        self._page_tokens = {}
        plans = RATE_LIMITS if rate_limits is None else rate_limits
        self.buckets = {
            operation: RateBucket(rate, burst, time.monotonic)
            for operation, (rate, burst) in plans.items()
        }
        items = r"/listings/2021-08-01/items/([^/]+)"
        self._routes = [
            ("POST", TOKEN_PATH, self._token, None),
            ("PATCH", items + "/([^/]+)", self._patch, "patchListingsItem"),
            ("GET", items + "/([^/]+)", self._get_listing, "getListingsItem"),
            ("GET", items, self._search, "searchListingsItems"),
            ("POST", FEEDS + "/documents", self._create_document, "createFeedDocument"),
            (
                "GET",
                FEEDS + "/documents/([^/]+)",
                self._get_document,
                "getFeedDocument",
            ),
            ("POST", FEEDS + "/feeds", self._create_feed, "createFeed"),
            ("GET", FEEDS + "/feeds/([^/]+)", self._get_feed, "getFeed"),
            ("PUT", "/_storage/upload/([^/]+)", self._upload, None),
            ("GET", "/_storage/download/([^/]+)", self._download, None),
            ("GET", "/orders/v0/orders", self._get_orders, "getOrders"),
            ("GET", "/orders/2026-01-01/orders", self._search_orders, "searchOrders"),
            ("GET", ORDER_ITEMS, self._get_order_items, "getOrderItems"),
            ("GET", PARTICIPATIONS, self._participations, PARTICIPATIONS_OP),
        ]

    # -- helpers for tests and benchmarks -------------------------------------
    def seed_skus(self, n, quantity=10, prefix="AMZ-", product_type="PRODUCT"):
        """Create ``n`` listings; return StockUpdate-ready dicts for them."""
        now = iso(datetime.now(timezone.utc))
        rows = []
        with self.lock:
            start = len(self.listings)
            for number in range(start, start + n):
                sku = f"{prefix}{number:06d}"
                asin = f"B0SIM{number:05d}"
                self.listings[sku] = {
                    "asin": asin,
                    "productType": product_type,
                    "createdDate": now,
                    "lastUpdatedDate": now,
                }
                self.quantities[sku] = quantity
                rows.append({"sku": sku, "quantity": quantity, "external_id": asin})
        return rows

    def config_fields(self):
        return {
            "channel_type": "amazon",
            "base_url": self.url,
            "token_url": self.url + TOKEN_PATH,
            "api_key": self.client_id,
            "api_secret": self.client_secret,
            "refresh_token": self.refresh_token,
            "account_id": self.seller_id,
            "marketplace_id": self.marketplace_id,
            "timeout": 5.0,
        }

    def reject_sku(self, sku, reason="SKU refused by the simulator"):
        """Make PATCH calls and feed messages for ``sku`` answer INVALID."""
        with self.lock:
            self.rejected[sku] = reason

    def seed_order(
        self,
        lines,
        status="Unshipped",
        order_id=None,
        updated_at=None,
        fulfillment="MFN",
    ):
        """Add an order; ``lines`` is [(sku, quantity)]. Return its id.

        ``fulfillment``: ``MFN`` (the seller ships) or ``AFN`` (Amazon ships
        from its own stock, FBA)."""
        number = next(self._ids)
        order_id = order_id or f"111-{number:07d}-{number:07d}"
        moment = updated_at or datetime.now(timezone.utc)
        with self.lock:
            self.orders[order_id] = {
                "AmazonOrderId": order_id,
                "PurchaseDate": iso(moment),
                "LastUpdateDate": iso(moment),
                "OrderStatus": status,
                "MarketplaceId": self.marketplace_id,
                "FulfillmentChannel": fulfillment,
                "_items": [
                    {
                        "ASIN": (self.listings.get(sku) or {}).get("asin", ""),
                        "SellerSKU": sku,
                        "OrderItemId": f"{number:06d}{index:04d}",
                        "QuantityOrdered": quantity,
                        "QuantityShipped": 0,
                    }
                    for index, (sku, quantity) in enumerate(lines)
                ],
            }
        return order_id

    def set_order_status(self, order_id, status, updated_at=None):
        moment = updated_at or datetime.now(timezone.utc)
        with self.lock:
            order = self.orders[order_id]
            order["OrderStatus"] = status
            order["LastUpdateDate"] = iso(moment)

    def cancel_order_item(
        self, order_id, sku, by="BUYER", executed=True, updated_at=None
    ):
        """Cancel one item of an order, as Orders 2026-01-01 reports it: the
        item's ``cancellation.cancellationExecution`` (who and why) once the
        cancellation is done; a buyer's request not yet acted on is only a
        ``cancellationRequest`` (the item still ships)."""
        moment = updated_at or datetime.now(timezone.utc)
        with self.lock:
            order = self.orders[order_id]
            for item in order["_items"]:
                if item["SellerSKU"] == sku:
                    if executed:
                        item["_cancellation"] = {
                            "cancellationExecution": {
                                "cancelledBy": by,
                                "cancelReason": "Customer request",
                            }
                        }
                    else:
                        item["_cancellation"] = {
                            "cancellationRequest": {
                                "cancelReason": "Customer request",
                            }
                        }
            order["LastUpdateDate"] = iso(moment)

    # -- dispatch ---------------------------------------------------------------
    def handle(self, req):
        for method, pattern, handler, operation in self._routes:
            match = re.fullmatch(pattern, req.path)
            if not match or method != req.method:
                continue
            args = [unquote(group) for group in match.groups()]
            if operation is None:
                return handler(req, *args)
            refused = self._authenticate(req)
            if refused is not None:
                return refused
            bucket = self.buckets.get(operation)
            limit = {"x-amzn-RateLimit-Limit": f"{bucket.rate:g}"} if bucket else {}
            if bucket is not None and not bucket.allow():
                return errors(
                    429,
                    "QuotaExceeded",
                    "You exceeded your quota for the requested resource.",
                    headers=limit,
                )
            response = handler(req, *args)
            response.headers.update(limit)
            response.headers.setdefault("x-amzn-RequestId", str(uuid.uuid4()))
            return response
        return errors(404, "NotFound", f"Resource {req.path} is not found.")

    def _authenticate(self, req):
        token = req.headers.get("x-amz-access-token")
        expiry = self._token_expiry(token)
        if not token:
            return denied("Access token is missing in the request header.")
        if expiry is None:
            return denied(
                "The access token you provided is revoked, malformed or invalid."
            )
        if self.clock() >= expiry:
            return denied("The access token you provided has expired.")
        return None

    def _token(self, req):
        form = {k: v[-1] for k, v in parse_qs(req.body.decode()).items()}
        with self.lock:
            self.token_requests += 1
        if form.get("grant_type") != "refresh_token":
            return Response(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": "The grant type is not supported",
                },
            )
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return Response(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "Client authentication failed",
                },
            )
        if form.get("refresh_token") != self.refresh_token:
            return Response(
                400,
                {
                    "error": "invalid_grant",
                    "error_description": "The request has an invalid grant parameter : "
                    "refresh_token",
                },
            )
        token = self._issue_token("Atza|sim-")
        return Response(
            200,
            {
                "access_token": token,
                "refresh_token": self.refresh_token,
                "token_type": "bearer",
                "expires_in": int(self.token_ttl),
            },
        )

    # -- listings ---------------------------------------------------------------
    def _wrong_seller(self, seller):
        if seller != self.seller_id:
            return denied("")
        return None

    def _patch(self, req, seller, sku):
        refused = self._wrong_seller(seller)
        if refused:
            return refused
        if not req.query.get("marketplaceIds"):
            return errors(400, "InvalidInput", "Missing required 'marketplaceIds'.")
        try:
            body = req.json() or {}
        except ValueError:
            return errors(400, "InvalidInput", "Request body is not valid JSON.")
        if not body.get("productType") or not isinstance(body.get("patches"), list):
            return errors(
                400, "InvalidInput", "'productType' and 'patches' are required."
            )
        quantity, issues = self._quantity_from_patches(sku, body["patches"])
        submission = uuid.uuid4().hex
        if issues:
            return Response(
                200,
                {
                    "sku": sku,
                    "status": "INVALID",
                    "submissionId": submission,
                    "issues": issues,
                },
            )
        if quantity is not None:
            self._apply_quantity(sku, quantity)
        return Response(
            200,
            {
                "sku": sku,
                "status": "ACCEPTED",
                "submissionId": submission,
                "issues": [],
            },
        )

    def _quantity_from_patches(self, sku, patches):
        """The DEFAULT quantity a list of patches sets, and the issues found."""
        issues = []
        quantity = None
        with self.lock:
            if sku in self.rejected:
                issues.append(issue("SIMULATOR_REJECTED", self.rejected[sku]))
            elif sku not in self.listings:
                issues.append(
                    issue("SIMULATOR_UNKNOWN_SKU", f"SKU {sku} is not listed")
                )
        for patch in patches:
            if not isinstance(patch, dict) or patch.get("op") not in (
                "add",
                "replace",
                "merge",
                "delete",
            ):
                issues.append(issue("SIMULATOR_BAD_PATCH", f"invalid patch {patch!r}"))
                continue
            if patch.get("path") != "/attributes/fulfillment_availability":
                continue
            for value in patch.get("value") or []:
                if value.get("fulfillment_channel_code") != "DEFAULT":
                    continue
                number = value.get("quantity")
                if (
                    not isinstance(number, int)
                    or isinstance(number, bool)
                    or number < 0
                ):
                    issues.append(
                        issue("SIMULATOR_BAD_QUANTITY", f"invalid quantity {number!r}")
                    )
                else:
                    quantity = number
        return quantity, issues

    def _apply_quantity(self, sku, quantity):
        with self.lock:
            self.quantities[sku] = quantity
            self.listings[sku]["lastUpdatedDate"] = iso(datetime.now(timezone.utc))

    def _item(self, sku, included):
        listing = self.listings[sku]
        item = {"sku": sku}
        if "summaries" in included:
            item["summaries"] = [
                {
                    "marketplaceId": self.marketplace_id,
                    "asin": listing["asin"],
                    "productType": listing["productType"],
                    "status": ["BUYABLE", "DISCOVERABLE"],
                    "createdDate": listing["createdDate"],
                    "lastUpdatedDate": listing["lastUpdatedDate"],
                }
            ]
        if "fulfillmentAvailability" in included:
            quantity = self.quantities.get(sku)
            entry = {"fulfillmentChannelCode": "DEFAULT"}
            if quantity is not None:
                entry["quantity"] = quantity
            item["fulfillmentAvailability"] = [entry]
        return item

    def _get_listing(self, req, seller, sku):
        refused = self._wrong_seller(seller)
        if refused:
            return refused
        included = (req.query.get("includedData") or "summaries").split(",")
        with self.lock:
            if sku not in self.listings:
                return errors(
                    404, "NOT_FOUND", f"SKU '{sku}' not found in marketplace."
                )
            return Response(200, self._item(sku, included))

    def _search(self, req, seller):
        refused = self._wrong_seller(seller)
        if refused:
            return refused
        query = req.query
        if not query.get("marketplaceIds"):
            return errors(400, "InvalidInput", "Missing required 'marketplaceIds'.")
        try:
            size = int(query.get("pageSize", 10))
        except ValueError:
            size = 0
        if not 1 <= size <= MAX_PAGE_SIZE:
            return errors(
                400, "InvalidInput", f"'pageSize' must be 1 to {MAX_PAGE_SIZE}."
            )
        if bool(query.get("identifiers")) != bool(query.get("identifiersType")):
            return errors(400, "InvalidInput", "'identifiers' needs 'identifiersType'.")
        included = (query.get("includedData") or "summaries").split(",")
        with self.lock:
            skus = self._matching_skus(query)
            total = len(skus)
            visible = skus[:SEARCH_RESULT_CAP]
            offset = self._page_offset(query.get("pageToken"))
            if offset is None:
                return errors(400, "InvalidInput", "Invalid 'pageToken'.")
            page = visible[offset : offset + size]
            body = {
                "numberOfResults": total,
                "items": [self._item(sku, included) for sku in page],
            }
        if offset + size < len(visible):
            token = base64.urlsafe_b64encode(f"o:{offset + size}".encode()).decode()
            body["pagination"] = {"nextToken": token}
        return Response(200, body)

    def _matching_skus(self, query):
        if query.get("identifiers"):
            if query.get("identifiersType") != "SKU":
                return []
            wanted = query["identifiers"].split(",")
            if len(wanted) > 20:
                return []
            skus = [sku for sku in dict.fromkeys(wanted) if sku in self.listings]
        else:
            skus = list(self.listings)
        if query.get("sortBy", "lastUpdatedDate") == "sku":
            skus.sort()
        else:
            skus.sort(key=lambda sku: (self.listings[sku]["lastUpdatedDate"], sku))
        if query.get("sortOrder", "DESC") == "DESC":
            skus.reverse()
        return skus

    @staticmethod
    def _page_offset(token):
        if not token:
            return 0
        try:
            text = base64.urlsafe_b64decode(token.encode()).decode()
            return int(text.removeprefix("o:"))
        except ValueError:
            return None

    # -- feeds ------------------------------------------------------------------
    def _create_document(self, req):
        try:
            content_type = (req.json() or {}).get("contentType")
        except ValueError:
            content_type = None
        if not content_type:
            return errors(400, "InvalidInput", "'contentType' is required.")
        document_id = f"amzn1.tortuga.4.sim.{uuid.uuid4().hex}"
        with self.lock:
            self.documents[document_id] = {
                "contentType": content_type,
                "content": None,
                "input": True,
            }
        url = f"{self.url}/_storage/upload/{document_id}"
        return Response(201, {"feedDocumentId": document_id, "url": url})

    def _upload(self, req, document_id):
        with self.lock:
            document = self.documents.get(document_id)
            if document is None or not document["input"]:
                return Response(404, "<Error><Code>NoSuchKey</Code></Error>")
            if req.headers.get("content-type") != document["contentType"]:
                return Response(
                    403, "<Error><Code>SignatureDoesNotMatch</Code></Error>"
                )
            document["content"] = req.body
        return Response(200, b"")

    def _create_feed(self, req):
        try:
            body = req.json() or {}
        except ValueError:
            body = {}
        document_id = body.get("inputFeedDocumentId")
        if (
            not body.get("feedType")
            or not body.get("marketplaceIds")
            or not document_id
        ):
            return errors(
                400,
                "InvalidInput",
                "'feedType', 'marketplaceIds' and 'inputFeedDocumentId' are required.",
            )
        with self.lock:
            document = self.documents.get(document_id)
            if document is None or document["content"] is None:
                return errors(400, "InvalidInput", "Invalid input feed document.")
            feed_id = str(50000 + next(self._ids))
            self.feeds[feed_id] = {
                "feedId": feed_id,
                "feedType": body["feedType"],
                "marketplaceIds": body["marketplaceIds"],
                "createdTime": iso(datetime.now(timezone.utc)),
                "processingStatus": "IN_QUEUE",
                "_document": document_id,
                "_polls": 0,
            }
            if not self.feed_polls_to_done:
                self._process_feed(self.feeds[feed_id])
        return Response(202, {"feedId": feed_id})

    def _get_feed(self, req, feed_id):
        with self.lock:
            feed = self.feeds.get(feed_id)
            if feed is None:
                return errors(404, "NotFound", f"Feed {feed_id} not found.")
            if feed["processingStatus"] in ("IN_QUEUE", "IN_PROGRESS"):
                feed["_polls"] += 1
                if feed["_polls"] >= self.feed_polls_to_done:
                    self._process_feed(feed)
                else:
                    feed["processingStatus"] = "IN_PROGRESS"
                    feed["processingStartTime"] = iso(datetime.now(timezone.utc))
            public = {k: v for k, v in feed.items() if not k.startswith("_")}
        return Response(200, public)

    def _process_feed(self, feed):
        """Apply a JSON_LISTINGS_FEED and store its processing report (lock held)."""
        document = self.documents[feed["_document"]]
        issues, applied = [], 0
        try:
            content = json.loads(document["content"])
            messages = content["messages"]
            header = content["header"]
        except (ValueError, KeyError, TypeError):
            content, messages, header = None, None, {}
        if feed["feedType"] != "JSON_LISTINGS_FEED" or not isinstance(messages, list):
            issues.append(
                issue("SIMULATOR_BAD_DOCUMENT", "not a JSON listings feed v2")
            )
        elif header.get("sellerId") != self.seller_id or header.get("version") != "2.0":
            issues.append(
                issue("SIMULATOR_BAD_HEADER", "header sellerId/version invalid")
            )
        elif len(messages) > MAX_FEED_MESSAGES:
            issues.append(
                issue(
                    "SIMULATOR_TOO_MANY_MESSAGES",
                    f"{len(messages)} messages, more than {MAX_FEED_MESSAGES}",
                )
            )
        if issues:
            status, report_messages = "FATAL", []
        else:
            status, report_messages = "DONE", messages
        for message in report_messages:
            refusals = self._apply_message(message)
            for refusal in refusals:
                refusal.update(
                    messageId=message.get("messageId"), sku=message.get("sku")
                )
            issues.extend(refusals)
            applied += not refusals
        report = {
            "header": {
                "sellerId": self.seller_id,
                "version": "2.0",
                "feedId": feed["feedId"],
            },
            "issues": issues,
            "summary": {
                "errors": len(issues),
                "warnings": 0,
                "messagesProcessed": len(report_messages),
                "messagesAccepted": applied,
                "messagesInvalid": len(report_messages) - applied,
            },
        }
        result_id = f"amzn1.tortuga.4.sim.{uuid.uuid4().hex}"
        data = json.dumps(report).encode()
        self.documents[result_id] = {
            "contentType": "application/json",
            "content": gzip.compress(data) if self.compress_reports else data,
            "input": False,
            "compressed": self.compress_reports,
        }
        now = iso(datetime.now(timezone.utc))
        feed.update(
            processingStatus=status,
            processingStartTime=feed.get("processingStartTime", now),
            processingEndTime=now,
            resultFeedDocumentId=result_id,
        )

    def _apply_message(self, message):
        if message.get("operationType") != "PATCH" or not message.get("productType"):
            return [issue("SIMULATOR_UNSUPPORTED", "only PATCH messages are simulated")]
        sku = message.get("sku", "")
        quantity, issues = self._quantity_from_patches(
            sku, message.get("patches") or []
        )
        if not issues and quantity is not None:
            self._apply_quantity(sku, quantity)
        return issues

    def _get_document(self, req, document_id):
        with self.lock:
            document = self.documents.get(document_id)
            if document is None or document["input"]:
                return errors(404, "NotFound", f"Document {document_id} not found.")
            body = {
                "feedDocumentId": document_id,
                "url": f"{self.url}/_storage/download/{document_id}",
            }
            if document.get("compressed"):
                body["compressionAlgorithm"] = "GZIP"
        return Response(200, body)

    def _download(self, req, document_id):
        with self.lock:
            document = self.documents.get(document_id)
        if document is None or document["input"]:
            return Response(404, "<Error><Code>NoSuchKey</Code></Error>")
        return Response(200, document["content"])

    # -- orders and sellers -----------------------------------------------------
    def _get_orders(self, req):
        query = req.query
        if not query.get("MarketplaceIds"):
            return errors(400, "InvalidInput", "MarketplaceIds is required.")
        if query.get("NextToken"):
            state = self._page_tokens.get(query["NextToken"])
            if state is None:
                return errors(400, "InvalidInput", "Invalid NextToken.")
            query, offset = state
        else:
            offset = 0
            if not (query.get("LastUpdatedAfter") or query.get("CreatedAfter")):
                return errors(
                    400,
                    "InvalidInput",
                    "Either CreatedAfter or LastUpdatedAfter must be specified.",
                )
        size = _page_size(query, "MaxResultsPerPage")
        if size is None:
            return errors(400, "InvalidInput", "MaxResultsPerPage must be 1 to 100.")
        field, since = "LastUpdateDate", parse_iso(query.get("LastUpdatedAfter"))
        if since is None:
            field, since = "PurchaseDate", parse_iso(query.get("CreatedAfter"))
        if since is None:
            return errors(400, "InvalidInput", "Invalid date.")
        channels = [c for c in (query.get("FulfillmentChannels") or "").split(",") if c]
        if any(c not in ("AFN", "MFN") for c in channels):
            return errors(400, "InvalidInput", "Invalid FulfillmentChannels.")
        with self.lock:
            matching = sorted(
                (
                    o
                    for o in self.orders.values()
                    if parse_iso(o[field]) >= since
                    and (not channels or o["FulfillmentChannel"] in channels)
                ),
                key=lambda o: (o[field], o["AmazonOrderId"]),
            )
            page = [
                {k: v for k, v in o.items() if not k.startswith("_")}
                for o in matching[offset : offset + size]
            ]
            payload = {"Orders": page}
            if offset + size < len(matching):
                token = uuid.uuid4().hex
                self._page_tokens[token] = (dict(query), offset + size)
                payload["NextToken"] = token
        return Response(200, {"payload": payload})

    def _search_orders(self, req):
        """Orders 2026-01-01 ``searchOrders``: the items come with each order;
        ``fulfillment`` only when ``includedData`` asks for it. A page token
        must come with the same parameters as the request that gave it
        (``maxResultsPerPage`` and ``includedData`` excepted)."""
        query = dict(req.query)
        token = query.pop("paginationToken", None)
        fixed = {
            k: v
            for k, v in query.items()
            if k not in ("maxResultsPerPage", "includedData")
        }
        if token:
            state = self._page_tokens.get(token)
            if state is None:
                return errors(400, "InvalidInput", "Invalid paginationToken.")
            if state[0] != fixed:
                return errors(
                    400,
                    "InvalidInput",
                    "Parameters must match the request that gave the token.",
                )
            offset = state[1]
        else:
            offset = 0
        created, updated = query.get("createdAfter"), query.get("lastUpdatedAfter")
        if bool(created) == bool(updated):
            return errors(
                400,
                "InvalidInput",
                "Exactly one of createdAfter and lastUpdatedAfter must be provided.",
            )
        size = _page_size(query, "maxResultsPerPage")
        if size is None:
            return errors(400, "InvalidInput", "maxResultsPerPage must be 1 to 100.")
        field, since = (
            ("LastUpdateDate", parse_iso(updated))
            if updated
            else ("PurchaseDate", parse_iso(created))
        )
        if since is None:
            return errors(400, "InvalidInput", "Invalid date.")
        by = [c for c in (query.get("fulfilledBy") or "").split(",") if c]
        if any(c not in FULFILLED_BY.values() for c in by):
            return errors(400, "InvalidInput", "Invalid fulfilledBy.")
        included = {c for c in (query.get("includedData") or "").split(",") if c}
        if included - INCLUDED_DATA:
            return errors(400, "InvalidInput", "Invalid includedData.")
        markets = [m for m in (query.get("marketplaceIds") or "").split(",") if m]
        if len(markets) > 50:
            return errors(400, "InvalidInput", "At most 50 marketplaceIds.")
        with self.lock:
            matching = sorted(
                (
                    o
                    for o in self.orders.values()
                    if parse_iso(o[field]) >= since
                    and (not by or FULFILLED_BY[o["FulfillmentChannel"]] in by)
                    and (not markets or o["MarketplaceId"] in markets)
                ),
                key=lambda o: (o[field], o["AmazonOrderId"]),
            )
            page = [
                self._order_2026(
                    o, "FULFILLMENT" in included, "CANCELLATION" in included
                )
                for o in matching[offset : offset + size]
            ]
            body = {"orders": page}
            if offset + size < len(matching):
                next_token = uuid.uuid4().hex
                self._page_tokens[next_token] = (fixed, offset + size)
                body["pagination"] = {"nextToken": next_token}
        return Response(200, body)

    @staticmethod
    def _order_2026(order, fulfillment, cancellation=False):
        shaped = {
            "orderId": order["AmazonOrderId"],
            "createdTime": order["PurchaseDate"],
            "lastUpdatedTime": order["LastUpdateDate"],
            "salesChannel": {
                "channelName": "AMAZON",
                "marketplaceId": order["MarketplaceId"],
            },
            "orderItems": [
                {
                    "orderItemId": item["OrderItemId"],
                    "product": {"asin": item["ASIN"], "sellerSku": item["SellerSKU"]},
                    "quantityOrdered": item["QuantityOrdered"],
                    **(
                        {"cancellation": item["_cancellation"]}
                        if cancellation and item.get("_cancellation")
                        else {}
                    ),
                }
                for item in order["_items"]
            ],
        }
        if fulfillment:
            shaped["fulfillment"] = {
                "fulfillmentStatus": FULFILLMENT_STATUS[order["OrderStatus"]],
                "fulfilledBy": FULFILLED_BY[order["FulfillmentChannel"]],
            }
        return shaped

    def _get_order_items(self, req, order_id):
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                return errors(404, "NotFound", f"Order {order_id} not found.")
            offset = int(req.query.get("NextToken") or 0)
            size = self.order_items_page_size
            items = [
                {key: value for key, value in item.items() if key[0] != "_"}
                for item in order["_items"][offset : offset + size]
            ]
            payload = {"AmazonOrderId": order_id, "OrderItems": items}
            if offset + size < len(order["_items"]):
                payload["NextToken"] = str(offset + size)
        return Response(200, {"payload": payload})

    def _participations(self, req):
        return Response(
            200,
            {
                "payload": [
                    {
                        "marketplace": {
                            "id": self.marketplace_id,
                            "name": "Amazon.com",
                            "countryCode": "US",
                            "defaultCurrencyCode": "USD",
                            "defaultLanguageCode": "en_US",
                            "domainName": "www.amazon.com",
                        },
                        "participation": {
                            "isParticipating": True,
                            "hasSuspendedListings": False,
                        },
                    }
                ]
            },
        )


def order_change_notification(
    order_id, status, lines, seller_id, when=None, fulfillment="MFN"
):
    """An ORDER_CHANGE notification as SQS delivers it (schema v1.0)."""
    moment = when or datetime.now(timezone.utc)
    return {
        "NotificationVersion": "1.0",
        "NotificationType": "ORDER_CHANGE",
        "PayloadVersion": "1.0",
        "EventTime": iso(moment),
        "Payload": {
            "OrderChangeNotification": {
                "NotificationLevel": "OrderLevel",
                "SellerId": seller_id,
                "AmazonOrderId": order_id,
                "OrderChangeType": "OrderStatusChange",
                "OrderChangeTrigger": {
                    "TimeOfOrderChange": iso(moment),
                    "ChangeReason": "Order status changed",
                },
                "Summary": {
                    "MarketplaceId": "ATVPDKIKX0DER",
                    "OrderStatus": status,
                    "PurchaseDate": iso(moment - timedelta(minutes=5)),
                    "DestinationPostalCode": "98101",
                    "FulfillmentType": fulfillment,
                    "OrderType": "StandardOrder",
                    "OrderItems": [
                        {
                            "OrderItemId": f"{index:014d}",
                            "SellerSKU": sku,
                            "SupplySourceId": None,
                            "Quantity": quantity,
                        }
                        for index, (sku, quantity) in enumerate(lines)
                    ],
                },
            }
        },
        "NotificationMetadata": {
            "ApplicationId": "amzn1.sellerapps.app.simulator",
            "SubscriptionId": str(uuid.uuid4()),
            "PublishTime": iso(moment),
            "NotificationId": str(uuid.uuid4()),
        },
    }
