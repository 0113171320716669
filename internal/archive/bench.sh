#!/usr/bin/env bash
# Compares xrc's archive Writer and Reader with the zstd CLI on the very
# same bytes, per data class and level, in CPU-normalised units (MB of raw
# input per CPU-second, MB = 10^6 B), which hold up on a shared machine
# where wall time does not. Each Go measurement is taken right next to the
# CLI measurement it is compared with, round after round, and the reported
# figure is the median over rounds of those paired ratios, so a machine that
# speeds up or slows down between phases does not bias it.
#
# Run from the repository root:   bash internal/archive/bench.sh
# Works offline (the Go module cache must hold the dependencies).
#
# Environment:
#   COUNT    rounds, medians reported (default 3)
#   SIZE     bytes per data class (default 33554432 = 32 MiB)
#   LEVELS   zstd levels to compare (default "1 3 7 11"; the pure-Go
#            encoder maps 1-2 fastest, 3-5 default, 6-9 better, 10+ best)
#   REPS     zstd -d runs inside each timed decode sample, so a decode is
#            not dominated by process start-up (default 5)
#   KEEP     if set, keep the work directory (corpus, outputs, raw results)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# As the Makefile and Dockerfile.source build libzstd: zstd's own -O3.
export CGO_CFLAGS=${CGO_CFLAGS:--O3 -g}
pkg=./internal/archive
count=${COUNT:-3}
size=${SIZE:-$((32 << 20))}
levels=${LEVELS:-"1 3 7 11"}
reps=${REPS:-5}
classes="csv jsonl xml text random"

for tool in go zstd sha256sum awk sort; do
	command -v "$tool" >/dev/null || { echo "bench.sh: $tool not found" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/xrc-bench.XXXXXX")
if [[ -z ${KEEP:-} ]]; then
	trap 'rm -rf "$work"' EXIT
else
	echo "work directory: $work"
fi

echo "# $(date -u +%FT%TZ) $(go version | cut -d' ' -f3-) | $(zstd --version | sed 's/^\*\*\* //; s/ \*\*\*$//')"
echo "# $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //') | nproc=$(nproc) load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo ?)"
echo "# size=$size rounds=$count levels=$levels"

# One test binary dumps the corpus and runs the benchmarks on the dumped
# files, so the CLI compresses exactly the bytes the Go benchmarks use.
go test -c -o "$work/archive.test" "$pkg"
"$work/archive.test" -test.run '^TestDumpCorpus$' -dump "$work/corpus" -corpus-size "$size" | grep '^encoder' | sed 's/^/# /'


# gobench ROUND REGEX: runs the matching benchmarks once each and appends
# their result lines, prefixed with the round, to go.txt.
gobench() {
	(cd "$pkg" && "$work/archive.test" -test.run '^$' -test.bench "$2" -test.benchtime 1x -corpus-dir "$work/corpus") |
		grep -E '^Benchmark' | sed "s/^/$1 /" >>"$work/go.txt" || true
}

# cpu_seconds N CMD...: runs CMD N times with output discarded and prints
# the user+sys CPU seconds of one run (bash's time keyword reads the
# children's rusage).
cpu_seconds() {
	local n=$1 t
	shift
	t=$({ TIMEFORMAT='%U %S'; time for ((i = 0; i < n; i++)); do "$@" >/dev/null 2>&1; done; } 2>&1)
	awk -v t="$t" -v n="$n" 'BEGIN { split(t, a, " "); printf "%.4f\n", (a[1] + a[2]) / n }'
}

# mbps BYTES SECONDS: MB per CPU-second.
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.1f\n", b / 1e6 / s; else print "inf" }'; }

echo "# rounds of: go benchmarks (-benchtime 1x) then zstd -q -T1 -LEVEL -f in -o out, per class and level;"
echo "# BenchmarkReader(Parts) then zstd -q -d -c out > /dev/null ($reps runs per sample), per class"
: >"$work/go.txt"
: >"$work/cli.txt"
for round in $(seq "$count"); do
	for class in $classes; do
		in="$work/corpus/$class"
		raw=$(wc -c <"$in")
		for level in $levels; do
			out="$work/$class.$level.zst"
			gobench "$round" "^BenchmarkWriter(PureGo)?\$/^data=$class\$/^level=$level\$"
			cpu=$(mbps "$raw" "$(cpu_seconds 1 zstd -q -T1 "-$level" -f "$in" -o "$out")")
			comp=$(awk -v r="$raw" -v c="$(wc -c <"$out")" 'BEGIN { printf "%.3f\n", r / c }')
			echo "$round comp $class $level $cpu $comp" >>"$work/cli.txt"
		done
		# Decode level-3 output, as BenchmarkReader reads level-3 archives.
		[[ -f $work/$class.3.zst ]] || zstd -q -T1 -3 -f "$in" -o "$work/$class.3.zst"
		gobench "$round" "^BenchmarkReader(Parts)?\$/^data=$class\$"
		echo "$round dec $class $(mbps "$raw" "$(cpu_seconds "$reps" zstd -q -d -c "$work/$class.3.zst")")" >>"$work/cli.txt"
		echo "$round sha $class $(mbps "$raw" "$(cpu_seconds "$reps" sha256sum "$in")")" >>"$work/cli.txt"
	done
	echo "# round $round of $count done"
done

# go.txt lines look like:
# 2 BenchmarkWriter/data=csv/level=3-2  1  123 ns/op  271.2 MB/s  2.78 ratio  131.0 MB/cpu-s ...
awk -v levels="$levels" -v classes="$classes" '
function metric(unit,   i) { for (i = 4; i < NF; i++) if ($(i + 1) == unit) return $i; return "" }
function add(key, v) { if (v != "") vals[key] = vals[key] " " v }
function med(key,   n, i, j, t, a) {
	n = split(vals[key], a, " ")
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	if (n == 0) return 0
	return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
FNR == NR {
	name = $2; sub(/-[0-9]+$/, "", name)
	go[$1 " " name] = metric("MB/cpu-s"); add(name " cpu", go[$1 " " name]); add(name " ratio", metric("ratio"))
	next
}
$2 == "comp" { cli[$1 " " $3 " " $4] = $5; add("cli " $3 " " $4, $5); cliratio[$3 " " $4] = $6 }
$2 == "dec" { clidec[$1 " " $3] = $4; add("clidec " $3, $4); rounds[$1] = 1 }
$2 == "sha" { clisha[$1 " " $3] = $4; add("clisha " $3, $4) }
# restated: the Reader against 1 / (1/zstd_d + 1/sha256sum), both CLIs timed in the same round
function restated(gname, class,   r, g, d, h, key) {
	key = "restated " gname
	for (r in rounds) {
		g = go[r " " gname]; d = clidec[r " " class]; h = clisha[r " " class]
		if (g > 0 && d > 0 && h > 0) add(key, g * (1 / d + 1 / h))
	}
	return med(key)
}
# pair ROUND-KEYED-GO ROUND-KEYED-CLI into the median of per-round ratios
function paired(gname, ckey, dec,   r, g, c, key) {
	key = "pair " gname " " ckey
	for (r in rounds) {
		g = go[r " " gname]; c = dec ? clidec[r " " ckey] : cli[r " " ckey]
		if (g > 0 && c > 0) add(key, g / c)
	}
	return med(key)
}
END {
	nc = split(classes, C, " "); nl = split(levels, L, " ")
	print ""
	print "Compression: MB of input per CPU-second and ratio (raw/compressed), medians over rounds;"
	print "xrc/zstd is the median of per-round ratios. xrc = the Writer with the build'"'"'s encoder (libzstd"
	print "with cgo); pure Go = the CGO_ENABLED=0 fallback."
	printf "%-7s %5s %13s %14s %9s %10s %11s %16s %13s %14s\n", "class", "level", "xrc MB/cpu-s", "zstd MB/cpu-s", "xrc/zstd", "xrc ratio", "zstd ratio", "pure Go MB/cpu-s", "pure Go/zstd", "pure Go ratio"
	for (c = 1; c <= nc; c++) for (l = 1; l <= nl; l++) {
		k = "BenchmarkWriter/data=" C[c] "/level=" L[l]
		p = "BenchmarkWriterPureGo/data=" C[c] "/level=" L[l]
		ck = C[c] " " L[l]
		printf "%-7s %5s %13.1f %14.1f %8.2fx %10.3f %11.3f %16.1f %12.2fx %14.3f\n", C[c], L[l], med(k " cpu"), med("cli " ck), paired(k, ck, 0), med(k " ratio"), cliratio[ck], med(p " cpu"), paired(p, ck, 0), med(p " ratio")
	}
	print ""
	print "Extraction of level-3 archives: xrc Reader (zstd + tar + SHA-256 verification) vs zstd -d, and"
	print "the Reader'"'"'s two parts alone: zstd decoding (what zstd -d does) and SHA-256 (what it does not)."
	print "bound/zstd = the best any reader that hashes can reach: 1 / (1/decode + 1/sha256), over zstd -d."
	printf "%-7s %13s %16s %9s %15s %12s %16s %11s %10s\n", "class", "xrc MB/cpu-s", "zstd -d MB/cpu-s", "xrc/zstd", "decode MB/cpu-s", "decode/zstd", "sha256 MB/cpu-s", "bound/zstd", "xrc/bound"
	for (c = 1; c <= nc; c++) {
		x = "BenchmarkReader/data=" C[c]; d = "BenchmarkReaderParts/data=" C[c] "/part=zstd"; h = med("BenchmarkReaderParts/data=" C[c] "/part=sha256 cpu")
		dz = paired(d, C[c], 1); xz = paired(x, C[c], 1)
		bz = (dz > 0 && h > 0) ? 1 / (1 / dz + med("clidec " C[c]) / h) : 0
		printf "%-7s %13.1f %16.1f %8.2fx %15.1f %11.2fx %16.1f %10.2fx %9.2fx\n", C[c], med(x " cpu"), med("clidec " C[c]), xz, med(d " cpu"), dz, h, bz, (bz > 0 ? xz / bz : 0)
	}
	print ""
	print "Extraction goal, restated: the Reader (decode + untar + SHA-256 of every member) >= 0.9 x"
	print "1 / (1/(zstd -d) + 1/sha256sum), the two CLIs timed on the same bytes in the same round."
	printf "%-7s %13s %16s %18s %13s %7s\n", "class", "xrc MB/cpu-s", "zstd -d MB/cpu-s", "sha256sum MB/cpu-s", "xrc/restated", "goal"
	for (c = 1; c <= nc; c++) {
		x = "BenchmarkReader/data=" C[c]; rs = restated(x, C[c])
		printf "%-7s %13.1f %16.1f %18.1f %12.2fx %7s\n", C[c], med(x " cpu"), med("clidec " C[c]), med("clisha " C[c]), rs, (rs >= 0.9 ? "met" : "not met")
	}
}' "$work/go.txt" "$work/cli.txt"
echo
echo "Notes: xrc numbers are whole-process CPU (Go runtime and GC included) for tar framing, SHA-256"
echo "and zstd in memory; the CLI numbers include process start and file I/O. With libzstd, xrc level N"
echo "is the CLI's level N; the pure-Go encoder runs its setting for N (fastest/default/better/best)."
