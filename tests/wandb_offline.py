"""Reading the records of an offline W&B run log (``run-*.wandb``) back, for the tests.

The file is W&B's transaction log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0) followed by
LevelDB log-format blocks of 32 KiB, each chunk a 7-byte header (crc32, length, type: full / first /
middle / last) and payload; each reassembled payload is one serialised ``wandb_internal_pb2.Record``.
wandb 0.31 ships no Python reader for it, so the tests carry this small one.
"""
import struct

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path):
    data = open(path, "rb").read()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B" and magic == 0xBEE1, f"{path}: not a W&B run log"
    out, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer: padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        payload = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        if kind == FULL:
            pending = payload
        elif kind == FIRST:
            pending = payload
            continue
        elif kind == MIDDLE:
            pending += payload
            continue
        elif kind == LAST:
            pending += payload
        rec = pb.Record()
        rec.ParseFromString(pending)
        out.append(rec)
        pending = b""
    return out


def summarise(path):
    """``{"run": RunRecord, "config": {key: json}, "summary": {key: json}, "history": [{key: json}]}``."""
    import json

    def key(i):
        return i.key or "/".join(i.nested_key)

    res = {"run": None, "config": {}, "summary": {}, "history": []}
    for r in read_records(path):
        k = r.WhichOneof("record_type")
        if k == "run":
            res["run"] = r.run
            res["config"].update({i.key: json.loads(i.value_json) for i in r.run.config.update})
        elif k == "config":
            res["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif k == "summary":
            res["summary"].update({key(i): json.loads(i.value_json) for i in r.summary.update})
        elif k == "history":
            res["history"].append({key(i): json.loads(i.value_json) for i in r.history.item})
    return res
