"""Message and document shapes: every dialect's way of writing a conversation or a retrieval
result, turned into the OTel GenAI parts shape (conventions.md 1.4) that the audit record uses.

Pure functions over attribute dicts and log bodies; `normalize.py` decides when to use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from . import mappings as m

Attrs = Mapping[str, Any]


def json_lenient(v: Any) -> Any:
    """JSON text as a value; anything that is not JSON stays as it is."""
    if isinstance(v, str) and v[:1] in ("{", "["):
        try:
            return orjson.loads(v)
        except orjson.JSONDecodeError:
            return v
    return v


def indexed(attrs: Attrs, prefix: str) -> list[dict[str, Any]]:
    """Flattened lists (`prefix.{i}.sub.key`) as a list of {sub.key: value}, by index."""
    groups: dict[int, dict[str, Any]] = {}
    plen = len(prefix)
    for k, v in attrs.items():
        if k.startswith(prefix):
            idx, _, sub = k[plen:].partition(".")
            if idx.isdigit():
                groups.setdefault(int(idx), {})[sub] = v
    return [groups[i] for i in sorted(groups)]


def dumps(v: Any) -> str:
    return orjson.dumps(v).decode()


# -- message shapes --------------------------------------------------------------------------


def tool_call_part(id_: Any, name: Any, arguments: Any) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "tool_call", "name": name}
    if id_ is not None:
        part["id"] = id_
    if arguments is not None:
        part["arguments"] = json_lenient(arguments)
    return part


def oi_message(msg: dict[str, Any], finish_reason: Any = None) -> dict[str, Any]:
    """OpenInference `llm.*_messages.{i}.message.*` -> OTel ChatMessage."""
    role = msg.get("message.role")
    parts: list[dict[str, Any]] = []
    content = msg.get("message.content")
    if role == "tool" and msg.get("message.tool_call_id") is not None:
        parts.append({"type": "tool_call_response", "id": msg["message.tool_call_id"],
                      "response": json_lenient(content)})
    elif content is not None:
        parts.append({"type": "text", "content": content})
    for c in indexed(msg, "message.contents."):
        kind = c.get("message_content.type")
        if kind == "image":
            parts.append({"type": "uri", "modality": "image",
                          "uri": c.get("message_content.image.image.url")})
        elif c.get("message_content.text") is not None:
            parts.append({"type": "text", "content": c["message_content.text"]})
    for tc in indexed(msg, "message.tool_calls."):
        parts.append(tool_call_part(tc.get("tool_call.id"), tc.get("tool_call.function.name"),
                                     tc.get("tool_call.function.arguments")))
    out: dict[str, Any] = {"role": role, "parts": parts}
    if msg.get("message.name") is not None:
        out["name"] = msg["message.name"]
    if finish_reason is not None:
        out["finish_reason"] = finish_reason
    return out


def legacy_message(msg: dict[str, Any]) -> dict[str, Any]:
    """OpenLLMetry legacy `gen_ai.prompt.{i}.*` / `gen_ai.completion.{i}.*` -> OTel shape."""
    role = msg.get("role")
    parts: list[dict[str, Any]] = []
    content = msg.get("content")
    if msg.get("tool_call_id") is not None:
        parts.append({"type": "tool_call_response", "id": msg["tool_call_id"],
                      "response": json_lenient(content)})
    elif content is not None:
        parts.append({"type": "text", "content": content})
    for tc in indexed(msg, "tool_calls."):
        parts.append(tool_call_part(tc.get("id"), tc.get("name"), tc.get("arguments")))
    out: dict[str, Any] = {"role": role, "parts": parts}
    if msg.get("finish_reason") is not None:
        out["finish_reason"] = msg["finish_reason"]
    return out


def openai_messages(value: Any) -> list[dict[str, Any]] | None:
    """Chat-completions style [{role, content, tool_calls}] (GenAI <= 1.27 span events)."""
    value = json_lenient(value)
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return [{"role": None, "parts": [{"type": "text", "content": str(value)}]}]
    out = []
    for item in value:
        if not isinstance(item, dict):
            out.append({"role": None, "parts": [{"type": "text", "content": str(item)}]})
            continue
        if "parts" in item:  # already the OTel shape
            out.append(item)
            continue
        msg = item.get("message") if isinstance(item.get("message"), dict) else item
        parts: list[dict[str, Any]] = []
        if msg.get("content") is not None:
            parts.append({"type": "text", "content": msg["content"]})
        tool_calls = msg.get("tool_calls")
        for tc in tool_calls if isinstance(tool_calls, list) else ():
            if not isinstance(tc, dict):  # hand-written payloads: skip, never raise
                continue
            fn = tc.get("function")
            fn = fn if isinstance(fn, dict) else {}
            parts.append(tool_call_part(tc.get("id"), fn.get("name"), fn.get("arguments")))
        o: dict[str, Any] = {"role": msg.get("role"), "parts": parts}
        if item.get("finish_reason") is not None:
            o["finish_reason"] = item["finish_reason"]
        out.append(o)
    return out


# -- documents -------------------------------------------------------------------------------


def doc(id_: Any, score: Any, content: Any, metadata: Any, uri: Any = None,
         distance: Any = None) -> dict[str, Any]:
    d: dict[str, Any] = {"id": id_}
    if score is not None:
        d["score"] = score
    if distance is not None:  # smaller is closer: never folded into `score`
        d["distance"] = distance
    if content is not None:
        d["content"] = content
    meta = json_lenient(metadata)
    if meta is not None:
        d["metadata"] = meta
    if uri is not None:
        d["uri"] = uri
    return d


def oi_documents(attrs: Attrs, prefix: str) -> list[dict[str, Any]]:
    return [
        doc(d.get("document.id"), d.get("document.score"), d.get("document.content"),
             d.get("document.metadata"), d.get("document.url"))
        for d in indexed(attrs, prefix)
    ]


def log_content(event_name: str, attrs: Attrs, body: Any
                ) -> tuple[str | None, str | None, str | None, bool]:
    """GenAI content a log record carries: (input messages, output messages, system
    instructions) as JSON text in the OTel parts shape, and whether it is the whole
    conversation (the details event) rather than one message."""
    kind = m.LOG_CONTENT_EVENTS.get(event_name)
    if kind is None:
        return None, None, None, False
    what, role = kind
    try:
        if what == "details":
            out = []
            for key in ("gen_ai.input.messages", "gen_ai.output.messages",
                        "gen_ai.system_instructions"):
                v = json_lenient(attrs.get(key))
                out.append(dumps(v) if isinstance(v, list) else None)
            return out[0], out[1], out[2], True
        body = json_lenient(body)
        if not isinstance(body, dict):
            body = {"content": body}
        if what == "output":
            msg = body.get("message") if isinstance(body.get("message"), dict) else body
            item = {**msg, "role": msg.get("role") or role}
            if body.get("finish_reason") is not None:
                item["finish_reason"] = body["finish_reason"]
            return None, dumps(openai_messages([item])), None, False
        if role == "tool" and body.get("id") is not None:
            msg = {"role": "tool", "parts": [{"type": "tool_call_response", "id": body["id"],
                                              "response": json_lenient(body.get("content"))}]}
            return dumps([msg]), None, None, False
        item = {**body, "role": body.get("role") or role}
        return dumps(openai_messages([item])), None, None, False
    except (TypeError, ValueError, AttributeError):  # odd shapes stay in the raw columns
        return None, None, None, False
