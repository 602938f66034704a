-- safetensors files exchanged with PyTorch, both ways, value for value.
--
-- The oracle below is Python + torch with the format written and read by hand (json + struct +
-- torch.frombuffer), because Debian's python3-safetensors may be absent; it follows the reference
-- library's layout (header padded with spaces to 8 bytes, tensors sorted by element size then name).
-- Python prints its tensors as a Lua table literal, which this spec loads and compares exactly.
local ls = require "landscape"
local torch = require "torch_oracle"

local ORACLE = [==[
import json, math, struct, sys
import torch

TAG = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.uint8: "U8",
       torch.float16: "F16", torch.bfloat16: "BF16", torch.int32: "I32", torch.bool: "BOOL"}
DTYPE = {v: k for k, v in TAG.items()}

def num(x):
    if isinstance(x, bool):
        return "1" if x else "0"
    if isinstance(x, int):
        return str(x)
    if math.isnan(x):
        return "(0/0)"
    if math.isinf(x):
        return "(1/0)" if x > 0 else "(-1/0)"
    return repr(float(x))

def lua_str(s):
    return "\"" + "".join("\\%03d" % b for b in s.encode()) + "\""

def lua_tensor(t):
    vals = ",".join(num(v) for v in t.reshape(-1).tolist())
    shape = ",".join(str(d) for d in t.shape)
    return "{dtype=%s,shape={%s},values={%s}}" % (lua_str(TAG[t.dtype]), shape, vals)

def lua_result(tensors, meta, extra=""):
    ts = ",".join("[%s]=%s" % (lua_str(k), lua_tensor(v)) for k, v in tensors.items())
    ms = ",".join("[%s]=%s" % (lua_str(k), lua_str(v)) for k, v in meta.items())
    return "return {tensors={%s},meta={%s}%s}" % (ts, ms, extra)

def save(path, tensors, meta):
    items = sorted(tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    header, blobs, off = {}, [], 0
    if meta:
        header["__metadata__"] = meta
    for name, t in items:
        raw = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": TAG[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))

def load(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    assert (8 + n) % 8 == 0, "header not padded to 8 bytes"
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    data = buf[8 + n:]
    meta = header.pop("__metadata__", {})
    spans = sorted((v["data_offsets"], k) for k, v in header.items())
    at = 0
    for (b, e), k in spans:
        assert b == at, "gap or overlap before " + k
        at = e
    assert at == len(data), "data buffer not covered exactly"
    out = {}
    for name, v in header.items():
        b, e = v["data_offsets"]
        dt = DTYPE[v["dtype"]]
        if e > b:
            t = torch.frombuffer(bytearray(data[b:e]), dtype=dt).reshape(v["shape"])
        else:
            t = torch.empty(v["shape"], dtype=dt)
        out[name] = t.clone()
    return out, meta

cmd, path = sys.argv[1], sys.argv[2]
if cmd == "write":
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(),
                                torch.nn.Linear(4, 2))
    model.train()
    model(torch.randn(8, 3))          # moves the running statistics and num_batches_tracked
    tensors = dict(model.state_dict())
    tensors["extra.f64"] = torch.randn(2, 3, dtype=torch.float64)
    tensors["extra.u8"] = torch.arange(0, 256, 51, dtype=torch.uint8)
    tensors["extra.f16"] = torch.tensor([1.0, -2.5, 65504.0, 6e-8], dtype=torch.float16)
    tensors["extra.bf16"] = torch.tensor([1.0, -3.140625, 1e30], dtype=torch.bfloat16)
    tensors["extra.i32"] = torch.tensor([-2**31, 0, 2**31 - 1], dtype=torch.int32)
    tensors["extra.bool"] = torch.tensor([True, False, True])
    tensors["extra.i64"] = torch.tensor([[-2**62, 1], [2, 2**62]], dtype=torch.int64)
    tensors["extra.scalar"] = torch.tensor(0.25)
    tensors["extra.empty"] = torch.zeros(0, 3)
    meta = {"format": "pt", "framework": "torch", "note": "quote \" and \u00e9"}
    save(path, tensors, meta)
    print(lua_result(tensors, meta))
elif cmd == "read":
    tensors, meta = load(path)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    model.load_state_dict({k: v for k, v in tensors.items() if k[0] in "02"}, strict=True)
    y = model(torch.tensor([[1.0, -2.0, 0.5]]))
    print(lua_result(tensors, meta, ",forward={%s}" % ",".join(num(v) for v in y.reshape(-1).tolist())))
]==]

local function flat(t)
    local out = {}
    local function walk(v)
        if type(v) == "table" then
            for _, x in ipairs(v) do walk(x) end
        else
            out[#out + 1] = v
        end
    end
    walk(t:totable())
    return out
end

local function run_oracle(cmd, path)
    local out = torch.run(ORACLE, {cmd, path})
    local chunk = assert(load(out, "oracle output", "t", {}))
    return chunk()
end

-- Which landscape dtype each safetensors dtype loads as.
local LOADS_AS = {F32 = "f32", F64 = "f64", I64 = "i64", U8 = "u8", F16 = "f32", BF16 = "f32",
                  I32 = "i64", BOOL = "u8"}

describe("safetensors with PyTorch", function()
    local dir

    setup(function() dir = torch.tempdir() end)
    teardown(function() torch.remove_dir(dir) end)

    it("loads a state dict written by torch, exactly", function()
        if not torch.available() then return pending(torch.MISSING) end
        local path = dir .. "/from_torch.safetensors"
        local want = run_oracle("write", path)
        local got, meta = ls.io.load_safetensors(path)
        assert.are.same(want.meta, meta)
        local count = 0
        for name, w in pairs(want.tensors) do
            count = count + 1
            local t = got[name]
            assert.is_not_nil(t, name)
            assert.are.equal(LOADS_AS[w.dtype], t.dtype, name)
            assert.are.same(w.shape, t:size(), name)
            assert.are.same(w.values, flat(t), name)
        end
        for name in pairs(got) do assert.is_not_nil(want.tensors[name], name) end
        assert.are.equal(18, count)
        assert.are.equal(1, got["1.num_batches_tracked"]:item())
    end)

    it("writes files torch reads back exactly, loadable as a state dict", function()
        if not torch.available() then return pending(torch.MISSING) end
        local base = ls.randn({4, 2}, {seed = 11})
        local ts = {
            ["0.weight"] = ls.randn({4, 3}, {seed = 1}),
            ["0.bias"] = ls.randn({4}, {seed = 2}),
            ["2.weight"] = base:t(),                         -- a non-contiguous view
            ["2.bias"] = ls.tensor({0.5, -0.25}),
            ["extra.f64"] = ls.randn({2, 2}, {seed = 3, dtype = "f64"}),
            ["extra.i64"] = ls.tensor({-2 ^ 62, 7, 2 ^ 62}, {dtype = "i64"}),
            ["extra.u8"] = ls.tensor({0, 17, 255}, {dtype = "u8"}),
            ["extra.scalar"] = ls.tensor(3.5, {dtype = "f64"}),
            ["extra.empty"] = ls.zeros({0, 2}),
        }
        local meta = {format = "pt", seed = "1", note = "ünï \"quoted\" \\ back"}
        local path = dir .. "/from_landscape.safetensors"
        ls.io.save_safetensors(path, ts, meta)
        local got = run_oracle("read", path)
        assert.are.same(meta, got.meta)
        for name, t in pairs(ts) do
            local g = got.tensors[name]
            assert.is_not_nil(g, name)
            assert.are.equal(t.dtype, LOADS_AS[g.dtype], name)
            assert.are.same(t:size(), g.shape, name)
            assert.are.same(flat(t), g.values, name)
        end
        -- torch ran the loaded model: y = W2 relu(W1 x + b1) + b2, checked here in f64
        local W1, b1 = ts["0.weight"]:totable(), ts["0.bias"]:totable()
        local W2, b2 = ts["2.weight"]:totable(), ts["2.bias"]:totable()
        local x, h = {1, -2, 0.5}, {}
        for i = 1, 4 do
            local s = b1[i]
            for j = 1, 3 do s = s + W1[i][j] * x[j] end
            h[i] = math.max(s, 0)
        end
        for i = 1, 2 do
            local s = b2[i]
            for j = 1, 4 do s = s + W2[i][j] * h[j] end
            assert.near(s, got.forward[i], 1e-5)
        end
    end)
end)
