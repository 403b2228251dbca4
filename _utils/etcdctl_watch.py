"""
A bounded etcd watch for the ``etcdctl`` execution module, with the ``etcd3`` client's
raw gRPC stream and a deadline. Not etcd3's Watcher: its background thread never ends
and raises "Channel closed" once the client is closed (etcd3 0.12 watch.py).

``start_revision`` replays history from that revision, so a caller that must not miss
events (a put made right after the call) reads the revision first and passes it on:
no waiting for the watch to be established.
"""

import threading

from salt.exceptions import CommandExecutionError


def watch(url, key, *, ca, cert, cert_key, prefix=False, timeout=5, max_events=100,
          values=False, start_revision=None):  # fmt: skip
    """Events on key (or prefix) for up to timeout seconds or max_events events."""
    try:
        import etcd3  # noqa: PLC0415  (optional: only the watch needs it)
        import grpc  # noqa: PLC0415
        from etcd3 import etcdrpc, utils  # noqa: PLC0415
    except ImportError as err:
        raise CommandExecutionError("etcdctl.watch needs the etcd3 Python package") from err
    host, _, port = url.split("://", 1)[-1].rpartition(":")
    client = etcd3.client(
        host=host, port=int(port), ca_cert=ca, cert_cert=cert, cert_key=cert_key, timeout=timeout
    )
    create = etcdrpc.WatchCreateRequest(key=utils.to_bytes(key))
    if prefix:
        create.range_end = utils.increment_last_byte(utils.to_bytes(key))
    if start_revision:
        create.start_revision = int(start_revision)
    done = threading.Event()

    def requests():
        yield etcdrpc.WatchRequest(create_request=create)
        # Closing our side ends the watch on the server: hold it open until we are done.
        done.wait(float(timeout) + 1)

    stream = etcdrpc.WatchStub(client.channel).Watch(requests(), timeout=float(timeout))
    events = []
    try:
        for response in stream:
            if response.compact_revision:
                raise CommandExecutionError(
                    f"etcd watch on {url}: revision {start_revision} is compacted "
                    f"(oldest kept: {response.compact_revision})"
                )
            for ev in response.events:
                entry = {
                    "type": "DELETE" if ev.type == ev.DELETE else "PUT",
                    "key": ev.kv.key.decode(errors="replace"),
                    "mod_revision": ev.kv.mod_revision,
                }
                if values:
                    entry["value"] = ev.kv.value.decode(errors="replace")
                events.append(entry)
            if len(events) >= int(max_events):
                break
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise CommandExecutionError(f"etcd watch on {url} failed: {err.details()}") from err
    finally:
        done.set()
        stream.cancel()
        client.close()
    return events[: int(max_events)]
