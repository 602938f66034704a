-- LuaRocks: `luarocks make` (in a clone of this repository) builds landscape through its CMake build
-- and installs, for the stock lua5.4, the module landscape.so, the Lua layer (landscape/*.lua) and
-- the `landscape` executable into the rock tree. The C libraries come from Debian (see
-- tools/bootstrap.sh: liblua5.4-dev libopenblas-dev liblapacke-dev libcsv-dev zlib1g-dev
-- libedit-dev libjansson-dev, and cmake); docs/install.md has the details.
rockspec_format = "3.0"
package = "landscape"
version = "0.1.0-1"
source = {
    url = "git+file://.",   -- built from the working tree by `luarocks make`
}
description = {
    summary = "Loss landscapes of neural networks: tensors, autodiff to any order, curvature",
    detailed = [[
A C11 engine (f32/f64 tensors, an autodiff that differentiates its own backward pass, Hessian
and curvature estimators, optimizers) with a Lua 5.4 module on top: model builders, training
methods (SGD, SAM, gradient-norm and Hessian-trace penalties), margins, sharpness, landscape
slices, statistics and paper-ready figures.]],
}
dependencies = {
    "lua >= 5.4, < 5.5",
}
build = {
    type = "cmake",
    variables = {
        CMAKE_BUILD_TYPE = "Release",
        CMAKE_INSTALL_PREFIX = "$(PREFIX)",
        LS_INSTALL_LUADIR = "$(LUADIR)",
        LS_INSTALL_CMODDIR = "$(LIBDIR)",
        LS_INSTALL_BINDIR = "$(BINDIR)",
        LS_BUILD_TESTS = "OFF",
    },
}
