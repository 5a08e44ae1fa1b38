"""Per-language data: readers for `<lang>.<split>` files, validation with file and line, data checks."""

from xft_core.data.readers import (  # noqa: F401
    EXTENSIONS,
    DataError,
    DataSet,
    Split,
    discover,
    read_rows,
    select,
    validate,
)
