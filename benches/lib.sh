# Sourced by the benches/*.sh scripts, for what every one of them does first.
#
#   bench_init   cd to the repository, refuse to run unless root, put cargo on
#                PATH, set T (the release build directory)
#   bench_mem    MEM: the EAL memory arguments, 512 MB of hugepages when at
#                least 300 pages are free, else --no-huge (about half as fast)
#   median       the median of the numbers on stdin (0 if none)
#   wait_socket SOCK LOG
#                wait (up to 20 s) for gatewayd's control socket; on failure
#                print its log and exit

bench_init() {
    cd "$(dirname "$0")/.."
    [ "$(id -u)" = 0 ] || { echo "run as root (hugepages, namespaces)" >&2; exit 1; }
    [ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
    T=${CARGO_TARGET_DIR:-target}/release
}

bench_mem() {
    MEM=(-m 512)
    [ "$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)" -ge 300 ] || MEM=(--no-huge -m 512)
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) {print 0} else if (NR % 2) {print a[(NR+1)/2]} else {print (a[NR/2] + a[NR/2+1]) / 2}}'; }

wait_socket() {
    for _ in $(seq 1 200); do [ -S "$1" ] && return 0; sleep 0.1; done
    cat "$2"
    echo "gatewayd did not open its control socket $1" >&2
    exit 1
}
