--- landscape.nn (ls.nn): neural-network modules in the style of Torch7's `nn`, with the parameter
-- and buffer names of torch.nn, so weights move both ways through safetensors files.
--
--   local nn = ls.nn
--   local model = nn.sequential{
--     nn.flatten(), nn.linear(784, 128, {seed = 1}), nn.relu(), nn.linear(128, 10, {seed = 2}),
--   }
--   local loss = ls.cross_entropy(model(x), y)          -- model(x) == model:forward(x)
--   local g = ls.grad(loss, model:parameters())
--   model:save("m.safetensors")                          -- keys "1.weight", "1.bias", "3.weight", ...
--
-- Layers compute with registered C ops (matmul, add, conv2d, maxpool2d, var, ...), so the autograd
-- records every step and gradients of gradients (Hessian-vector products) go through every layer,
-- batch norm included. The containers are Lua tables; docs/nn.md is the reference.
--
-- The folder, imports pointing one way: nn/module.lua (the protocol: Module, nn.class, state dicts,
-- modes; documented there) <- nn/layers.lua (the layers) <- nn/models.lua (nn.mlp, nn.cnn,
-- nn.resnet) <- this file, which makes every constructor public (errors at the caller's line).
local util = require "landscape.util"
local base = require "landscape.nn.module"
local layers = require "landscape.nn.layers"
local models = require "landscape.nn.models"

local M = {Module = base.Module, class = base.class, load_into = base.load_into}

for _, part in ipairs({layers, models}) do
    for k, v in pairs(part) do
        M[k] = type(v) == "function" and util.public(v) or v   -- classes (tables) as they are
    end
end

return M
