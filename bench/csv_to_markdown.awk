# Renders the benchmarks' CSV as a Markdown table (for bench/README.md and docs/benchmarks.md).
#   awk -f bench/csv_to_markdown.awk results.csv
# Lines starting with '#' are skipped; a repeated header line is dropped.
BEGIN { FS = "," }
/^#/ { next }
NF == 0 { next }
{
    if ($0 == header) next
    line = "|"
    for (i = 1; i <= NF; i++) line = line " " $i " |"
    print line
    if (header == "") {
        header = $0
        sep = "|"
        for (i = 1; i <= NF; i++) sep = sep (i <= 3 || i == 5 ? "---|" : "---:|")
        print sep
    }
}
