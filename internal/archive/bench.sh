#!/usr/bin/env bash
# Compares xrc's archive Writer and Reader with the zstd CLI on the very
# same bytes, per data class and level, in CPU-normalised units (MB of raw
# input per CPU-second, MB = 10^6 B), which hold up on a shared machine
# where wall time does not.
#
# Run from the repository root:   bash internal/archive/bench.sh
# Works offline (the Go module cache must hold the dependencies).
#
# Environment:
#   COUNT    runs per benchmark, medians reported (default 3)
#   SIZE     bytes per data class (default 33554432 = 32 MiB)
#   LEVELS   zstd levels to compare (default "1 3 7 11"; klauspost maps
#            1-2 fastest, 3-5 default, 6-9 better, 10+ best)
#   KEEP     if set, keep the work directory (corpus, outputs, raw results)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
pkg=./internal/archive
count=${COUNT:-3}
size=${SIZE:-$((32 << 20))}
levels=${LEVELS:-"1 3 7 11"}
classes="csv jsonl xml text random"

for tool in go zstd awk sort; do
	command -v "$tool" >/dev/null || { echo "bench.sh: $tool not found" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/xrc-bench.XXXXXX")
if [[ -z ${KEEP:-} ]]; then
	trap 'rm -rf "$work"' EXIT
else
	echo "work directory: $work"
fi

echo "# $(date -u +%FT%TZ) $(go version | cut -d' ' -f3-) | $(zstd --version | sed 's/^\*\*\* //; s/ \*\*\*$//')"
echo "# nproc=$(nproc) load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo ?) size=$size count=$count"

# One test binary serves both the corpus dump and the benchmarks, so the
# CLI compresses exactly the bytes the Go benchmarks use.
go test -c -o "$work/archive.test" "$pkg"
"$work/archive.test" -test.run '^TestDumpCorpus$' -dump "$work/corpus" -corpus-size "$size" >/dev/null

echo "# go test $pkg -run '^\$' -bench . -benchtime 1x -count $count"
(cd "$pkg" && "$work/archive.test" -test.run '^$' -test.bench . -test.benchtime 1x \
	-test.count "$count" -corpus-size "$size") | tee "$work/go.txt" | grep -E '^Benchmark' || true

# cpu_seconds CMD...: runs CMD with output discarded and prints its
# user+sys CPU seconds (bash's time keyword reads the child's rusage).
cpu_seconds() {
	local t
	t=$({ TIMEFORMAT='%U %S'; time "$@" >/dev/null 2>&1; } 2>&1)
	awk -v t="$t" 'BEGIN { split(t, a, " "); printf "%.3f\n", a[1] + a[2] }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# mbps BYTES SECONDS: MB per CPU-second.
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.1f\n", b / 1e6 / s; else print "inf" }'; }

echo "# zstd CLI: zstd -q -T1 -LEVEL -f in -o out, zstd -q -d -c out > /dev/null"
: >"$work/cli.txt"
for class in $classes; do
	in="$work/corpus/$class"
	raw=$(wc -c <"$in")
	for level in $levels; do
		out="$work/$class.$level.zst"
		for _ in $(seq "$count"); do
			mbps "$raw" "$(cpu_seconds zstd -q -T1 "-$level" -f "$in" -o "$out")"
		done | median >"$work/c.tmp"
		comp=$(awk -v r="$raw" -v c="$(wc -c <"$out")" 'BEGIN { printf "%.3f\n", r / c }')
		echo "comp $class $level $(cat "$work/c.tmp") $comp" >>"$work/cli.txt"
	done
	# Decode the level-3 output, as BenchmarkReader reads level-3 archives.
	dec=$(for _ in $(seq "$count"); do
		mbps "$raw" "$(cpu_seconds zstd -q -d -c "$work/$class.3.zst")"
	done | median)
	echo "dec $class $dec" >>"$work/cli.txt"
done

# go.txt lines look like:
# BenchmarkWriter/data=csv/level=3-2  1  123 ns/op  271.2 MB/s  2.78 ratio  131.0 MB/cpu-s ...
awk -v levels="$levels" -v classes="$classes" '
function metric(unit,   i) { for (i = 3; i < NF; i++) if ($(i + 1) == unit) return $i; return "" }
function med(key,   n, i, j, t, a) {
	n = split(vals[key], a, " ")
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	if (n == 0) return "nan"
	return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
FNR == NR {
	if ($1 !~ /^Benchmark/) next
	name = $1; sub(/-[0-9]+$/, "", name)
	vals[name " cpu"] = vals[name " cpu"] " " metric("MB/cpu-s")
	vals[name " ratio"] = vals[name " ratio"] " " metric("ratio")
	next
}
$1 == "comp" { cli[$2 " " $3] = $4; cliratio[$2 " " $3] = $5 }
$1 == "dec" { clidec[$2] = $3 }
END {
	nc = split(classes, C, " "); nl = split(levels, L, " ")
	print ""
	print "Compression: MB of input per CPU-second (median), compression ratio (raw/compressed)"
	printf "%-7s %5s %13s %14s %9s %10s %11s\n", "class", "level", "xrc MB/cpu-s", "zstd MB/cpu-s", "xrc/zstd", "xrc ratio", "zstd ratio"
	for (c = 1; c <= nc; c++) for (l = 1; l <= nl; l++) {
		k = "BenchmarkWriter/data=" C[c] "/level=" L[l]
		x = med(k " cpu"); z = cli[C[c] " " L[l]]
		printf "%-7s %5s %13.1f %14.1f %8.2fx %10.3f %11.3f\n", C[c], L[l], x, z, (z > 0 ? x / z : 0), med(k " ratio"), cliratio[C[c] " " L[l]]
	}
	print ""
	print "Decompression of level-3 data: xrc Reader (zstd + tar + SHA-256 verify) vs zstd -d"
	printf "%-7s %13s %16s %9s\n", "class", "xrc MB/cpu-s", "zstd -d MB/cpu-s", "xrc/zstd"
	for (c = 1; c <= nc; c++) {
		x = med("BenchmarkReader/data=" C[c] " cpu"); z = clidec[C[c]]
		printf "%-7s %13.1f %16.1f %8.2fx\n", C[c], x, z, (z > 0 ? x / z : 0)
	}
}' "$work/go.txt" "$work/cli.txt"
echo
echo "Notes: xrc numbers are whole-process CPU (Go runtime and GC included) for tar framing, SHA-256"
echo "and zstd in memory; the CLI numbers include process start and file I/O. xrc level N uses"
echo "klauspost's encoder for N (fastest/default/better/best), which is not libzstd's level N."
