#!/usr/bin/env python3
"""Regenerate the tiny test fixtures in data/fixtures/ (run from anywhere: python3 data/make_fixtures.py).

Standard library only, written independently of landscape's own writers, so the specs that read
these files check landscape against a second implementation of each format:

  tiny-images-idx3-ubyte.gz   u8 [20, 4, 4] gzip'd IDX: pixel (i, r, c) = (7*i + 4*r + c) % 256
  tiny-labels-idx1-ubyte      u8 [20] raw IDX: label i = i % 4 (5 examples of each of 4 classes)
  tiny-i16.idx                i16 [2, 3]: -300, -1, 0, 1, 300, 32767
  tiny-f64.idx.gz             f64 [3]: 0.1, -2.5, 1e-300
  tiny.safetensors            F32 w [2,3] = 0.5*i - 1; F64 d [2] = 1/3, -1e300; I64 n [3] = -2^40, 0, 2^62;
                              U8 b [4] = 0, 1, 128, 255; F16 h [3] = 1, -2, 65504; BF16 bf [2] = 1, -0.5;
                              I32 i [2] = -7, 7; BOOL m [2] = false, true;
                              metadata {"format": "pt", "source": "make_fixtures.py"}
  tricky.csv                  quoting: commas, doubled quotes, a line break, blanks, an empty cell
Each file is well under a kilobyte. The expected values are repeated in tests/lua/io_spec.lua.
"""
import gzip
import json
import os
import struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def idx_bytes(type_code, fmt, shape, values):
    head = struct.pack(">BBBB", 0, 0, type_code, len(shape)) + struct.pack(">%dI" % len(shape), *shape)
    return head + struct.pack(">%d%s" % (len(values), fmt), *values)


def write(name, data, gz=False):
    path = os.path.join(HERE, name)
    if gz:
        # mtime=0 keeps the bytes identical from run to run.
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)


def safetensors_bytes(tensors, metadata):
    """tensors: list of (name, dtype tag, shape, raw little-endian bytes), written in list order."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def main():
    os.makedirs(HERE, exist_ok=True)
    images = [(7 * i + 4 * r + c) % 256 for i in range(20) for r in range(4) for c in range(4)]
    write("tiny-images-idx3-ubyte.gz", idx_bytes(0x08, "B", [20, 4, 4], images), gz=True)
    write("tiny-labels-idx1-ubyte", idx_bytes(0x08, "B", [20], [i % 4 for i in range(20)]))
    write("tiny-i16.idx", idx_bytes(0x0B, "h", [2, 3], [-300, -1, 0, 1, 300, 32767]))
    write("tiny-f64.idx.gz", idx_bytes(0x0E, "d", [3], [0.1, -2.5, 1e-300]), gz=True)

    tensors = [
        ("d", "F64", [2], struct.pack("<2d", 1 / 3, -1e300)),
        ("n", "I64", [3], struct.pack("<3q", -2**40, 0, 2**62)),
        ("w", "F32", [2, 3], struct.pack("<6f", *[0.5 * i - 1 for i in range(6)])),
        ("i", "I32", [2], struct.pack("<2i", -7, 7)),
        ("h", "F16", [3], struct.pack("<3e", 1.0, -2.0, 65504.0)),
        ("bf", "BF16", [2], struct.pack("<2H", 0x3F80, 0xBF00)),
        ("b", "U8", [4], bytes([0, 1, 128, 255])),
        ("m", "BOOL", [2], bytes([0, 1])),
    ]
    write("tiny.safetensors",
          safetensors_bytes(tensors, {"format": "pt", "source": "make_fixtures.py"}))

    csv_text = ('name,value,note\n'
                '"comma, inside",1.5,plain\n'
                '"say ""hi""",-2,"two\nlines"\n'
                '" padded ",,"trailing "\n')
    write("tricky.csv", csv_text.encode())


if __name__ == "__main__":
    main()
