"""Hand-written reader/writer for the safetensors format (no `safetensors` package here).

Layout of a file:
  bytes [0, 8)        N = header length, unsigned 64-bit little-endian
  bytes [8, 8+N)      UTF-8 JSON object:
                        {"__metadata__": {str: str, ...},            (optional)
                         "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
                         ...}
                      padded with trailing spaces so that 8+N is a multiple of 8
  bytes [8+N, ...)    raw little-endian, row-major tensor bytes; data_offsets are relative
                      to byte 8+N, tensors are contiguous and non-overlapping.
"""

import json
import struct

import numpy as np
import torch

# safetensors dtype string -> numpy little-endian dtype
DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAME_OF = {v: k for k, v in DTYPES.items()}


def _as_numpy(t):
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().contiguous().numpy()
    a = np.asarray(t)
    if not a.flags["C_CONTIGUOUS"]:  # np.ascontiguousarray would turn 0-d into 1-d
        a = a.copy(order="C")
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return a


def save(path, tensors, metadata=None):
    """Write {name: tensor-or-ndarray} to `path`. Data is laid out by decreasing element size,
    then by name, so every tensor starts at a multiple of its element size."""
    header = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"__metadata__ must map str -> str, got {k!r}: {v!r}")
        header["__metadata__"] = dict(metadata)
    if "__metadata__" in tensors:
        raise ValueError("tensor name __metadata__ is reserved")
    arrays = {name: _as_numpy(t) for name, t in tensors.items()}
    blobs = []
    offset = 0
    for name in sorted(arrays, key=lambda n: (-arrays[n].dtype.itemsize, n)):
        a = arrays[name]
        key = a.dtype.newbyteorder("<") if a.dtype.itemsize > 1 else a.dtype
        if key not in _NAME_OF:
            raise TypeError(f"{name}: unsupported dtype {a.dtype}")
        raw = a.tobytes(order="C")
        header[name] = {
            "dtype": _NAME_OF[key],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-(8 + len(text))) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def load(path):
    """Return ({name: np.ndarray}, metadata dict). Validates the layout strictly."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"{path}: header length {n} exceeds file size {len(data)}")
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {}) or {}
    body = memoryview(data)[8 + n :]
    out = {}
    spans = []
    for name, info in header.items():
        dt = DTYPES.get(info["dtype"])
        if dt is None:
            raise ValueError(f"{path}: {name}: unsupported dtype {info['dtype']}")
        shape = tuple(int(s) for s in info["shape"])
        begin, end = (int(x) for x in info["data_offsets"])
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if end - begin != count * dt.itemsize or end > len(body) or begin < 0:
            raise ValueError(f"{path}: {name}: bad data_offsets {begin},{end} for {shape}")
        spans.append((begin, end, name))
        out[name] = np.frombuffer(body[begin:end], dtype=dt).reshape(shape).copy()
    spans.sort()
    for (b0, e0, n0), (b1, _, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise ValueError(f"{path}: tensors {n0} and {n1} overlap")
    return out, metadata
