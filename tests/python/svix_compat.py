"""Svix SDK compatibility check for Herald.

Herald's /api/v1 REST API is meant to be wire-compatible with Svix. This script
drives a running Herald server with the *official* Svix Python SDK (written
against svix==2.9.1) and asserts that every call behaves the way the SDK and the
Svix API expect: request bodies are accepted, responses parse into the SDK's
models, and errors come back with the right HTTP status in the Svix error shape.

Usage:

    HERALD_URL=http://127.0.0.1:12345 HERALD_TOKEN=<tenant api key> \\
        python tests/python/svix_compat.py

Every run uses fresh uids and event type names (uuid4-based) and removes what
it created, so it can be run repeatedly against the same server. It prints one
line per section and "svix sdk compat: ok" at the end; any failure raises (an
uncaught AssertionError or SDK exception), which exits non-zero.
"""

import base64
import json
import os
import secrets
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional

from svix import Svix, SvixOptions
from svix.api.application import ApplicationListOptions
from svix.api.endpoint import EndpointListOptions
from svix.api.event_type import EventTypeDeleteOptions, EventTypeListOptions
from svix.api.operational_webhook_endpoint import OperationalWebhookEndpointListOptions
from svix.api.message_attempt import (
    MessageAttemptListAttemptedMessagesOptions,
    MessageAttemptListByEndpointOptions,
    MessageAttemptListByMsgOptions,
)
from svix.exceptions import HttpError, HTTPValidationError
from svix.models import (
    AppPortalAccessIn,
    ApplicationIn,
    ApplicationOut,
    ApplicationPatch,
    EndpointHeadersIn,
    EndpointHeadersPatchIn,
    EndpointIn,
    EndpointOut,
    EndpointPatch,
    EndpointSecretRotateIn,
    EndpointUpsertIn,
    EventTypeIn,
    EventTypeOut,
    EventTypePatch,
    EventTypeUpsertIn,
    EventExampleIn,
    MessageAttemptTriggerType,
    MessageIn,
    MessageStatus,
    OperationalWebhookEndpointIn,
    OperationalWebhookEndpointSecretIn,
    OperationalWebhookEndpointUpsertIn,
    RecoverIn,
    StatusCodeClass,
)

# Short unique suffix for this run; used in every uid and event type name.
RUN = uuid.uuid4().hex[:12]


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


def uid(prefix: str) -> str:
    """A uid/name that is unique to this run (matches ^[a-zA-Z0-9\\-_.]+$)."""
    return f"{prefix}-{RUN}"


def expect_status(code: int, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Exception:
    """Call fn and assert that the SDK raises an HTTP error with status `code`.

    svix 2.9.1 raises (svix/api/common.py, _filter_response_for_errors_response):
      * HTTPValidationError for 422 (body parsed as {"detail": [ValidationError...]})
      * HttpError for every other non-2xx status (body parsed as {"code", "detail"})
    and stores the HTTP status on the exception as `.status_code`.
    Anything else (e.g. a JSONDecodeError because the error body was not JSON)
    means Herald's error response is not in the shape the SDK expects.
    """
    try:
        result = fn(*args, **kwargs)
    except (HttpError, HTTPValidationError) as e:
        assert e.status_code == code, f"expected HTTP {code}, got HTTP {e.status_code}: {e}"
        return e
    except Exception as e:  # noqa: BLE001 - turn SDK parse failures into clear assertion messages
        raise AssertionError(
            f"expected HTTP {code} as an SDK HttpError/HTTPValidationError, but the SDK raised "
            f"{type(e).__name__}: {e} (is the error body in Svix's JSON error shape?)"
        ) from e
    raise AssertionError(f"expected HTTP {code}, but the call succeeded and returned {result!r}")


def collect_pages(fetch: Callable[[Optional[str]], Any], limit: Optional[int] = None,
                  max_pages: int = 10_000) -> List[Any]:
    """Follow `iterator` from page to page until `done`; return all items.

    `fetch(iterator)` must return a ListResponse*Out. If `limit` is given, also
    check that no page is larger than it.
    """
    items: List[Any] = []
    iterator: Optional[str] = None
    for _ in range(max_pages):
        page = fetch(iterator)
        if limit is not None:
            assert len(page.data) <= limit, f"page has {len(page.data)} items, limit was {limit}"
        items.extend(page.data)
        if page.done:
            return items
        assert page.iterator, "list page is not done but has no iterator"
        assert page.iterator != iterator, "iterator did not advance"
        iterator = page.iterator
    raise AssertionError(f"list did not finish within {max_pages} pages")


def all_apps(client: Svix, limit: Optional[int] = None) -> List[ApplicationOut]:
    return collect_pages(
        lambda it: client.application.list(ApplicationListOptions(limit=limit, iterator=it)),
        limit=limit,
    )


def all_event_types(client: Svix, include_archived: Optional[bool] = None) -> List[EventTypeOut]:
    return collect_pages(
        lambda it: client.event_type.list(
            EventTypeListOptions(iterator=it, include_archived=include_archived)
        )
    )


def all_endpoints(client: Svix, app_id: str) -> List[EndpointOut]:
    return collect_pages(
        lambda it: client.endpoint.list(app_id, EndpointListOptions(iterator=it))
    )


def make_app(client: Svix, name: str) -> ApplicationOut:
    return client.application.create(ApplicationIn(name=name, uid=uid(name)))


def make_event_type(client: Svix, name: str) -> EventTypeOut:
    return client.event_type.create(EventTypeIn(name=name, description=f"{name} (compat test)"))


def make_endpoint(client: Svix, app_id: str, **fields: Any) -> EndpointOut:
    return client.endpoint.create(app_id, EndpointIn(url="https://example.com/hook", **fields))


def rotate_secret(client: Svix, app_id: str, ep_id: str, body: EndpointSecretRotateIn) -> str:
    """rotate_secret, with a clear message if Herald answers without a JSON body.

    The Svix OpenAPI spec documents 204 No Content here, but svix 2.9.1 parses
    the response as EndpointSecretOut, so Herald has to answer 200 {"key": ...}.
    """
    try:
        return client.endpoint.rotate_secret(app_id, ep_id, body).key
    except json.JSONDecodeError as e:
        raise AssertionError(
            "rotate_secret response has no JSON body; svix 2.9.1 expects 200 with "
            'EndpointSecretOut {"key": "whsec_..."}, not 204'
        ) from e


def random_secret() -> str:
    """A valid endpoint secret: whsec_ + base64 of 24 random bytes (32 chars)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


# --------------------------------------------------------------------------- #
# sections
# --------------------------------------------------------------------------- #


def check_applications(client: Svix) -> None:
    # create, with uid and metadata
    app_uid = uid("app")
    app = client.application.create(
        ApplicationIn(name="Compat App", uid=app_uid, metadata={"team": "compat", "tier": "1"})
    )
    assert app.id, "created app has no id"
    assert app.uid == app_uid, app
    assert app.name == "Compat App", app
    assert app.metadata == {"team": "compat", "tier": "1"}, app

    # a second create with the same uid conflicts
    expect_status(409, client.application.create, ApplicationIn(name="Dup", uid=app_uid))

    # get_or_create returns the existing app untouched ...
    same = client.application.get_or_create(ApplicationIn(name="Other Name", uid=app_uid))
    assert same.id == app.id, (same, app)
    assert same.name == "Compat App", same
    # ... and creates one when the uid is new
    fresh_uid = uid("app-goc")
    fresh = client.application.get_or_create(ApplicationIn(name="Fresh", uid=fresh_uid))
    assert fresh.id != app.id and fresh.uid == fresh_uid and fresh.name == "Fresh", fresh
    again = client.application.get_or_create(ApplicationIn(name="Fresh again", uid=fresh_uid))
    assert again.id == fresh.id and again.name == "Fresh", again
    client.application.delete(fresh.id)

    # get by id and by uid
    by_id = client.application.get(app.id)
    assert by_id.id == app.id and by_id.uid == app_uid and by_id.metadata == app.metadata, by_id
    by_uid = client.application.get(app_uid)
    assert by_uid.id == app.id, by_uid

    # list with limit=2, paging through (at least) 5 apps with the iterator
    paged_ids = [app.id] + [make_app(client, f"page{i}").id for i in range(4)]
    seen = [a.id for a in all_apps(client, limit=2)]
    assert len(seen) == len(set(seen)), "an app appeared on more than one page"
    for app_id in paged_ids:
        assert seen.count(app_id) == 1, f"app {app_id} seen {seen.count(app_id)} times while paging"

    # update (PUT) replaces name and metadata
    updated = client.application.upsert(
        app.id, ApplicationIn(name="Compat App v2", uid=app_uid, metadata={"team": "put"})
    )
    assert updated.id == app.id and updated.name == "Compat App v2", updated
    assert updated.metadata == {"team": "put"}, updated
    assert client.application.get(app.id).name == "Compat App v2"

    # patch changes only the name; metadata is preserved
    patched = client.application.patch(app.id, ApplicationPatch(name="Compat App v3"))
    assert patched.name == "Compat App v3", patched
    assert patched.metadata == {"team": "put"}, patched
    assert patched.uid == app_uid, patched
    got = client.application.get(app.id)
    assert got.name == "Compat App v3" and got.metadata == {"team": "put"}, got

    # delete, then get -> 404 (by id and by uid)
    for app_id in paged_ids:
        client.application.delete(app_id)
    expect_status(404, client.application.get, app.id)
    expect_status(404, client.application.get, app_uid)

    print("applications: ok")


def check_event_types(client: Svix) -> None:
    signup = f"user.signup.{RUN}"
    deleted = f"user.deleted.{RUN}"

    # create two
    et1 = client.event_type.create(EventTypeIn(name=signup, description="A user signed up"))
    assert et1.name == signup and et1.description == "A user signed up", et1
    assert not et1.archived and et1.deprecated is False, et1
    et2 = client.event_type.create(EventTypeIn(name=deleted, description="A user was deleted"))
    assert et2.name == deleted, et2

    # duplicate create -> 409
    expect_status(409, client.event_type.create, EventTypeIn(name=signup, description="dup"))

    # get
    got = client.event_type.get(signup)
    assert got.name == signup and got.description == "A user signed up", got

    # list
    names = [e.name for e in all_event_types(client)]
    assert signup in names and deleted in names, "created event types missing from list"
    assert len(names) == len(set(names)), "an event type appeared twice while paging"

    # update (PUT), including a schema
    schemas = {"1": {"type": "object", "properties": {"userId": {"type": "string"}}}}
    put = client.event_type.upsert(
        signup, EventTypeUpsertIn(description="Signup (updated)", schemas=schemas)
    )
    assert put.name == signup and put.description == "Signup (updated)", put
    assert put.schemas == schemas, put

    # patch only the description; schemas are preserved
    patched = client.event_type.patch(signup, EventTypePatch(description="Signup (patched)"))
    assert patched.description == "Signup (patched)", patched
    assert patched.schemas == schemas, patched
    assert client.event_type.get(signup).description == "Signup (patched)"

    # delete archives it: hidden by default, shown (archived) with include_archived
    client.event_type.delete(deleted)
    assert deleted not in [e.name for e in all_event_types(client)], \
        "archived event type still listed without include_archived"
    with_archived = {e.name: e for e in all_event_types(client, include_archived=True)}
    assert deleted in with_archived, "archived event type missing with include_archived=True"
    assert with_archived[deleted].archived is True, with_archived[deleted]
    assert client.event_type.get(deleted).archived is True

    # re-creating an archived name un-archives it
    revived = client.event_type.create(EventTypeIn(name=deleted, description="Back again"))
    assert revived.name == deleted and not revived.archived, revived
    assert revived.description == "Back again", revived
    assert deleted in [e.name for e in all_event_types(client)], "un-archived type not listed"

    # delete with expunge removes it entirely
    client.event_type.delete(deleted, EventTypeDeleteOptions(expunge=True))
    expect_status(404, client.event_type.get, deleted)
    assert deleted not in [e.name for e in all_event_types(client, include_archived=True)], \
        "expunged event type still listed with include_archived=True"

    client.event_type.delete(signup, EventTypeDeleteOptions(expunge=True))
    print("event types: ok")


def check_endpoints(client: Svix) -> None:
    app = make_app(client, "endpoints")
    event = f"user.signup.ep.{RUN}"
    make_event_type(client, event)
    ep_uid = uid("ep")

    # create
    ep = client.endpoint.create(app.id, EndpointIn(
        url="https://example.com/hook",
        description="first",
        event_types=[event],
        channels=["project_1"],
        metadata={"owner": "compat"},
        uid=ep_uid,
    ))
    assert ep.id and ep.uid == ep_uid, ep
    assert ep.url == "https://example.com/hook" and ep.description == "first", ep
    assert ep.event_types == [event], ep
    assert ep.channels == ["project_1"], ep
    assert ep.metadata == {"owner": "compat"}, ep
    assert not ep.disabled, ep

    # get by id and by uid
    assert client.endpoint.get(app.id, ep.id).id == ep.id
    by_uid = client.endpoint.get(app.id, ep_uid)
    assert by_uid.id == ep.id and by_uid.url == ep.url, by_uid

    # list
    listed = all_endpoints(client, app.id)
    assert [e.id for e in listed] == [ep.id], listed

    # update (PUT)
    put = client.endpoint.upsert(app.id, ep.id, EndpointUpsertIn(
        url="https://example.com/hook2",
        description="updated",
        event_types=[event],
        channels=["project_1"],
        metadata={"owner": "put"},
        uid=ep_uid,
    ))
    assert put.id == ep.id and put.url == "https://example.com/hook2", put
    assert put.description == "updated" and put.metadata == {"owner": "put"}, put

    # patch: description and channels only; the rest is preserved
    patched = client.endpoint.patch(
        app.id, ep.id, EndpointPatch(description="patched", channels=["project_1", "project_2"])
    )
    assert patched.description == "patched", patched
    assert set(patched.channels or []) == {"project_1", "project_2"}, patched
    assert patched.url == "https://example.com/hook2", patched
    assert patched.event_types == [event], patched
    assert patched.metadata == {"owner": "put"}, patched
    assert patched.uid == ep_uid, patched
    got = client.endpoint.get(app.id, ep.id)
    assert got.description == "patched" and set(got.channels or []) == {"project_1", "project_2"}, got

    # an unknown event type filter is a validation error
    expect_status(422, make_endpoint, client, app.id, event_types=[f"no.such.type.{RUN}"])

    # delete, then get -> 404
    client.endpoint.delete(app.id, ep.id)
    expect_status(404, client.endpoint.get, app.id, ep.id)
    expect_status(404, client.endpoint.get, app.id, ep_uid)

    client.application.delete(app.id)
    client.event_type.delete(event, EventTypeDeleteOptions(expunge=True))
    print("endpoints: ok")


def check_endpoint_secret(client: Svix) -> None:
    app = make_app(client, "secret")
    ep = make_endpoint(client, app.id)

    first = client.endpoint.get_secret(app.id, ep.id).key
    assert first.startswith("whsec_"), first

    # rotate with no key: the SDK sends "{}" (fields left unset are not sent).
    rotated = rotate_secret(client, app.id, ep.id, EndpointSecretRotateIn())
    assert rotated.startswith("whsec_") and rotated != first, (first, rotated)
    assert client.endpoint.get_secret(app.id, ep.id).key == rotated

    # rotate to an explicit key: sends {"key": "whsec_..."}
    chosen = random_secret()
    explicit = rotate_secret(client, app.id, ep.id, EndpointSecretRotateIn(key=chosen))
    assert explicit == chosen, (chosen, explicit)
    assert client.endpoint.get_secret(app.id, ep.id).key == chosen

    client.application.delete(app.id)
    print("endpoint secret: ok")


def check_operational_webhook_endpoints(client: Svix) -> None:
    ops = client.operational_webhook.endpoint
    ep_uid = uid("ops")
    created = ops.create(
        OperationalWebhookEndpointIn(
            url="https://example.com/ops",
            uid=ep_uid,
            description="ops",
            event_types=["endpoint.disabled", "message.attempt.exhausted"],
            throttle_rate=5,
            metadata={"team": "sre"},
        )
    )
    assert created.id.startswith("ep_"), created
    assert created.uid == ep_uid and created.throttle_rate == 5, created
    assert created.event_types == ["endpoint.disabled", "message.attempt.exhausted"], created
    assert created.metadata == {"team": "sre"} and created.disabled is False, created

    assert ops.get(ep_uid).id == created.id
    listed = collect_pages(
        lambda it: ops.list(OperationalWebhookEndpointListOptions(limit=1, iterator=it))
    )
    assert created.id in [e.id for e in listed], listed

    updated = ops.upsert(
        created.id,
        OperationalWebhookEndpointUpsertIn(url="https://example.com/ops2", uid=ep_uid, disabled=True),
    )
    assert updated.url == "https://example.com/ops2" and updated.disabled is True, updated
    assert updated.event_types is None, updated

    first = ops.get_secret(created.id).key
    assert first.startswith("whsec_"), first
    ops.rotate_secret(created.id, OperationalWebhookEndpointSecretIn())
    rotated = ops.get_secret(created.id).key
    assert rotated.startswith("whsec_") and rotated != first, (first, rotated)
    chosen = random_secret()
    ops.rotate_secret(created.id, OperationalWebhookEndpointSecretIn(key=chosen))
    assert ops.get_secret(created.id).key == chosen

    err = expect_status(
        422,
        ops.create,
        OperationalWebhookEndpointIn(url="https://example.com", event_types=["invoice.paid"]),
    )
    assert isinstance(err, HTTPValidationError), err

    ops.delete(created.id)
    expect_status(404, ops.get, created.id)
    print("operational webhook endpoints: ok")


def check_endpoint_headers(client: Svix) -> None:
    app = make_app(client, "headers")
    ep = make_endpoint(client, app.id)

    def headers() -> Dict[str, Any]:
        out = client.endpoint.get_headers(app.id, ep.id)
        return {"headers": out.headers, "sensitive": out.sensitive}

    empty = headers()
    assert empty == {"headers": {}, "sensitive": []}, empty

    # set (PUT): sensitive headers are listed by name, never by value
    client.endpoint.set_headers(
        app.id, ep.id, EndpointHeadersIn(headers={"X-Foo": "bar", "Authorization": "Bearer x"})
    )
    h = headers()
    assert h["headers"].get("X-Foo") == "bar", h
    assert "Authorization" in h["sensitive"], h
    assert "Bearer x" not in h["headers"].values(), f"sensitive header value leaked: {h}"

    # patch with Svix's documented body {"headers": {"X-Foo": null, "X-New": "1"}}:
    # null removes a header. The SDK model types values as str (no None), so the
    # model is built with model_construct to send the nulls as-is.
    client.endpoint.patch_headers(
        app.id, ep.id,
        EndpointHeadersPatchIn.model_construct(headers={"X-Foo": None, "X-New": "1"}),
    )
    h = headers()
    assert "X-Foo" not in h["headers"], f"X-Foo not removed by null patch: {h}"
    assert h["headers"].get("X-New") == "1", h
    assert "Authorization" in h["sensitive"], f"patch dropped an unrelated header: {h}"

    # patch the way svix 2.9.1 models it: {"headers": {...}, "deleteHeaders": [...]}
    client.endpoint.patch_headers(
        app.id, ep.id,
        EndpointHeadersPatchIn(headers={"X-Other": "2"}, delete_headers=["X-New"]),
    )
    h = headers()
    assert "X-New" not in h["headers"], f"X-New not removed via deleteHeaders: {h}"
    assert h["headers"].get("X-Other") == "2", h

    client.application.delete(app.id)
    print("endpoint headers: ok")


def check_app_portal_access(client: Svix, url: str) -> None:
    app = make_app(client, "portal")
    other = make_app(client, "portal-other")
    ep = make_endpoint(client, app.id)

    access = client.authentication.app_portal_access(app.id, AppPortalAccessIn())
    assert access.token, access
    assert access.url, access

    portal = Svix(access.token, SvixOptions(server_url=url))
    got = portal.application.get(app.id)
    assert got.id == app.id, got
    listed = portal.endpoint.list(app.id)
    assert [e.id for e in listed.data] == [ep.id], listed

    # the app-scoped token cannot list all apps or see other apps
    expect_status(403, portal.application.list)
    expect_status(404, portal.application.get, other.id)

    client.application.delete(app.id)
    client.application.delete(other.id)
    print("app portal access: ok")


# --------------------------------------------------------------------------- #


class _Receiver(BaseHTTPRequestHandler):
    """Answers every POST with 200 and counts them."""

    received: List[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("content-length", "0"))
        _Receiver.received.append(self.rfile.read(length))
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


def wait_until(what: str, check: Callable[[], bool], limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def check_message_attempts(client: Svix) -> None:
    """The attempt log, resend, recover, send-example and stats, parsed by the
    SDK's own models; needs a server with the worker role."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        app = make_app(client, "attempts")
        ep = client.endpoint.create(
            app.id, EndpointIn(url=f"http://127.0.0.1:{server.server_port}/hook", uid=uid("ep"))
        )
        msg = client.message.create(
            app.id, MessageIn(event_type="invoice.paid", payload={"amount": 10}, event_id=uid("evt"))
        )

        def attempts_of_msg(**options: Any) -> List[Any]:
            return client.message_attempt.list_by_msg(
                app.id, msg.id, MessageAttemptListByMsgOptions(**options)
            ).data

        wait_until("the first attempt", lambda: len(attempts_of_msg()) == 1)
        [attempt] = attempts_of_msg(with_content=True)
        assert attempt.msg_id == msg.id and attempt.endpoint_id == ep.id, attempt
        assert attempt.status == MessageStatus.SUCCESS, attempt.status
        assert attempt.response_status_code == 200
        assert attempt.response == "ok", attempt.response
        assert attempt.trigger_type == MessageAttemptTriggerType.SCHEDULED
        assert attempt.url.endswith("/hook")
        assert attempts_of_msg(status=MessageStatus.FAIL) == []
        assert len(attempts_of_msg(status_code_class=StatusCodeClass.CODE2XX)) == 1
        assert len(attempts_of_msg(endpoint_id=ep.id, event_types=["invoice.paid"])) == 1
        by_endpoint = client.message_attempt.list_by_endpoint(
            app.id, ep.id, MessageAttemptListByEndpointOptions(status=MessageStatus.SUCCESS)
        )
        assert [a.id for a in by_endpoint.data] == [attempt.id]
        got = client.message_attempt.get(app.id, msg.id, attempt.id)
        assert got.id == attempt.id and got.response_status_code == 200

        messages = client.message_attempt.list_attempted_messages(
            app.id, ep.id, MessageAttemptListAttemptedMessagesOptions(with_content=True)
        )
        assert [m.id for m in messages.data] == [msg.id]
        assert messages.data[0].status == MessageStatus.SUCCESS
        assert messages.data[0].payload == {"amount": 10}
        destinations = client.message_attempt.list_attempted_destinations(app.id, msg.id)
        assert [d.id for d in destinations.data] == [ep.id]
        assert destinations.data[0].status == MessageStatus.SUCCESS

        client.message_attempt.resend(app.id, msg.id, ep.id)
        wait_until("the manual attempt", lambda: len(attempts_of_msg()) == 2)
        newest = attempts_of_msg()[0]
        assert newest.trigger_type == MessageAttemptTriggerType.MANUAL, newest

        client.message_attempt.expunge_content(app.id, msg.id, attempt.id)
        assert client.message_attempt.get(app.id, msg.id, attempt.id).response == ""

        stats = client.endpoint.get_stats(app.id, ep.id)
        assert stats.success == 1 and stats.fail == 0 and stats.pending == 0, stats

        recovered = client.endpoint.recover(
            app.id, ep.id, RecoverIn(since=datetime.now(timezone.utc) - timedelta(hours=1))
        )
        assert recovered.id.startswith("qtask_"), recovered

        example = client.endpoint.send_example(app.id, ep.id, EventExampleIn(event_type="user.signup"))
        assert example.event_type == "user.signup"
        wait_until("the example", lambda: len(_Receiver.received) >= 3)

        err = expect_status(
            422,
            client.endpoint.recover,
            app.id,
            ep.id,
            RecoverIn(since=datetime.now(timezone.utc) + timedelta(hours=1)),
        )
        assert isinstance(err, HTTPValidationError), err
        expect_status(404, client.message_attempt.get, app.id, msg.id, "atmpt_" + "x" * 27)
        client.application.delete(app.id)
        print("message attempts: ok")
    finally:
        server.shutdown()


def main() -> int:
    url = os.environ.get("HERALD_URL")
    token = os.environ.get("HERALD_TOKEN")
    if not url or not token:
        print("HERALD_URL and HERALD_TOKEN must be set", file=sys.stderr)
        return 2

    client = Svix(token, SvixOptions(server_url=url))
    check_applications(client)
    check_event_types(client)
    check_endpoints(client)
    check_endpoint_secret(client)
    check_endpoint_headers(client)
    check_operational_webhook_endpoints(client)
    check_app_portal_access(client, url)
    check_message_attempts(client)
    print("svix sdk compat: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
