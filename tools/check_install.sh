#!/usr/bin/env bash
# Installs landscape the two ways docs/install.md describes and loads it with the stock lua5.4:
#   1. `cmake --install` of the build in build/ (or $LANDSCAPE_BUILD_DIR) into a fresh prefix;
#   2. `luarocks make` of landscape-0.1.0-1.rockspec (Debian's luarocks, Lua 5.4) into a fresh tree.
# Each install must load `require "landscape"` and its Lua layer from the install (not from this
# source tree), run a model, and its `landscape` executable must do the same. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${LANDSCAPE_BUILD_DIR:-build}"
work=$(mktemp -d)
trap 'rm -rf "$work" build.luarocks' EXIT
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"

# $1: the directory every landscape file must come from; $2 = exe: the executable, whose module
# is built in (package.preload) rather than found on the cpath
check() {
    cat <<LUA
local root, exe = "$1", "${2:-}" == "exe"
local ls = require "landscape"
local function from(mod, path)
    local p = assert(package.searchpath(mod, path), mod .. " not found")
    assert(p:sub(1, #root) == root, mod .. " loaded from " .. p .. ", not from " .. root)
end
if not exe then from("landscape", package.cpath) end
from("landscape.nn", package.path)
from("landscape.io.plot", package.path)
local m = ls.nn.mlp{input = 4, hidden = {3}, classes = 2, seed = 1}
local y = m(ls.randn({5, 4}, {seed = 2}))
assert(y:size(1) == 5 and y:size(2) == 2)
assert(ls.help ~= nil and ls.plot.lines ~= nil and ls.linalg.solve ~= nil)
print("landscape loaded from " .. root)
LUA
}

echo "== cmake --install, then the stock lua5.4 =="
prefix="$work/prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 \
    LUA_PATH="$prefix/share/lua/5.4/?.lua;$prefix/share/lua/5.4/?/init.lua;;" \
    LUA_CPATH="$prefix/lib/lua/5.4/?.so;;" lua5.4 -e "$(check "$prefix")"
env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 \
    "$prefix/bin/landscape" -e "$(check "$prefix" exe)"

echo "== luarocks make, then the stock lua5.4 =="
tree="$work/tree"
luarocks --lua-version 5.4 make --tree "$tree" landscape-0.1.0-1.rockspec >"$work/luarocks.log" 2>&1 ||
    { cat "$work/luarocks.log"; exit 1; }
(
    unset LUA_PATH LUA_CPATH LUA_PATH_5_4 LUA_CPATH_5_4
    eval "$(luarocks --lua-version 5.4 --tree "$tree" path)"
    lua5.4 -e "$(check "$tree")"
    "$tree/bin/landscape" -e "$(check "$tree" exe)"
)
luarocks --lua-version 5.4 --tree "$tree" list landscape | grep -q "0.1.0-1"
echo "install checks passed"
