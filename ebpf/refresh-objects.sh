#!/bin/sh
# Rebuilds objects/events.bpf.o from bpf/ and records what it was built from (objects/events.bpf.o.inputs):
# run after changing anything in bpf/, and commit both files. tests/objects.rs fails while they are stale.
set -eu
cd "$(dirname "$0")/bpf"
CLANG=${AUDITRAIL_CLANG:-clang}
# shellcheck disable=SC2046
"$CLANG" $(cat clang-flags) -c events.bpf.c -o ../objects/events.bpf.o
{
    echo "# What objects/events.bpf.o was built from (ebpf/refresh-objects.sh); checked by tests/objects.rs."
    echo "clang $("$CLANG" --version | head -n 1)"
    for f in clang-flags events.bpf.c events.h kernel.h; do
        echo "sha256 $(sha256sum "$f" | cut -d' ' -f1) $f"
    done
    echo "object $(sha256sum ../objects/events.bpf.o | cut -d' ' -f1)"
} > ../objects/events.bpf.o.inputs
echo "refreshed ebpf/objects/events.bpf.o"
