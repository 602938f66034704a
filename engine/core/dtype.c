#include "core/dtype.h"

#include <string.h>

size_t ls_dtype_size(ls_dtype d)
{
    switch (d) {
    case LS_F32: return 4;
    case LS_F64: return 8;
    case LS_I64: return 8;
    case LS_U8: return 1;
    }
    return 0;
}

const char *ls_dtype_name(ls_dtype d)
{
    switch (d) {
    case LS_F32: return "f32";
    case LS_F64: return "f64";
    case LS_I64: return "i64";
    case LS_U8: return "u8";
    }
    return "?";
}

int ls_dtype_parse(const char *name, ls_dtype *out)
{
    static const struct { const char *name; ls_dtype d; } names[] = {
        {"f32", LS_F32}, {"float32", LS_F32}, {"float", LS_F32},
        {"f64", LS_F64}, {"float64", LS_F64}, {"double", LS_F64},
        {"i64", LS_I64}, {"int64", LS_I64}, {"long", LS_I64},
        {"u8", LS_U8}, {"uint8", LS_U8}, {"byte", LS_U8},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i].name) == 0) { *out = names[i].d; return 0; }
    return -1;
}
