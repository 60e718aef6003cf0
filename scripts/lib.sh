#!/usr/bin/env bash
# Pieces shared by scripts/bench and scripts/soak (sourced, not run): logging, the processes a
# script starts and their cleanup on exit, loopback ports, the 2 Mbps 720p30 test stream and
# its publisher, /proc readings, the load generator and its JSON report.
#
# The sourcing script sets LOG_TAG (the prefix of its log lines) and, for load_url,
# LOADTEST_CMD (the load generator's command line).

log() { echo "${LOG_TAG:-switchyard}: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# --- processes, cleanup ------------------------------------------------------------------------

PIDS=()
forget_pid() { # PID: drop a process that has been waited for
    local kept=() pid
    for pid in "${PIDS[@]}"; do [[ $pid == "$1" ]] || kept+=("$pid"); done
    PIDS=("${kept[@]}")
}
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stop_pid() { # PID: stop one of our processes and wait for it
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget_pid "$1"
}

port_free() { ! (: </dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

wait_port() { # PORT PID NAME LOG
    for _ in $(seq 100); do
        port_free "$1" || return 0
        kill -0 "$2" 2>/dev/null || {
            tail -n 20 "$4" >&2 || true
            die "$3 exited during startup (log: $4)"
        }
        sleep 0.1
    done
    die "$3 is not listening on 127.0.0.1:$1 after 10 s (log: $4)"
}

# --- media ---------------------------------------------------------------------------------------

# One 2 Mbps 1280x720 30 fps H.264 (main, no B-frames, a keyframe every 2 s) + AAC 128k stream,
# 20 s, encoded once into FILE (kept; published with `-stream_loop -1 -c copy`, so no encoder
# competes for the CPU).
encode_bench_media() { # FILE
    local MEDIA=$1
    [[ -s $MEDIA ]] && return 0
    mkdir -p "$(dirname "$MEDIA")"
    log "encoding $MEDIA (once)"
    ffmpeg -hide_banner -loglevel error -nostdin -y \
        -f lavfi -i testsrc2=size=1280x720:rate=30 \
        -f lavfi -i sine=frequency=440:sample_rate=44100 \
        -t 20 -pix_fmt yuv420p \
        -c:v libx264 -profile:v main -bf 0 -preset veryfast -x264-params sliced-threads=0 \
        -g 60 -keyint_min 60 -sc_threshold 0 -b:v 2M -maxrate 2M -bufsize 1M \
        -c:a aac -b:a 128k -ac 2 \
        -f flv "$MEDIA.tmp"
    mv "$MEDIA.tmp" "$MEDIA"
}

publish() { # FFMPEG FILE URL LOG: FFMPEG loops FILE to URL in real time; sets PUBLISH_PID
    "$1" -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$2" -c copy \
        -f flv "$3" >"$4" 2>&1 &
    PUBLISH_PID=$!
    PIDS+=("$!")
}

# --- /proc ---------------------------------------------------------------------------------------

# A process and all its descendants.
descendants() { # PID
    local child
    local -a children=()
    echo "$1"
    mapfile -t children < <(cat /proc/"$1"/task/*/children 2>/dev/null | tr -s ' ' '\n' | grep . || true)
    for child in "${children[@]}"; do
        descendants "$child"
    done
}

pid_ticks() { # PID... -> utime+stime summed
    local total=0 pid stat rest
    local -a f
    for pid in "$@"; do
        stat=$(cat /proc/"$pid"/stat 2>/dev/null) || continue
        rest=${stat##*) } # fields from 3 (state) on; comm may contain spaces
        read -r -a f <<<"$rest"
        total=$((total + f[11] + f[12])) # fields 14 (utime) and 15 (stime)
    done
    echo "$total"
}

rss_kb_of() { # PID -> VmRSS, KB (empty if the process is gone)
    awk '/^VmRSS:/ {print $2}' /proc/"$1"/status 2>/dev/null
}

open_fds() { # PID -> open file descriptors (sockets, files, pipes, eventfds, ...)
    find /proc/"$1"/fd -mindepth 1 -maxdepth 1 2>/dev/null | wc -l
}

# --- the load generator and JSON -----------------------------------------------------------------

json_num() { # FIELD JSON
    sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" <<<"$2"
}

json_str() { # FIELD JSON
    sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" <<<"$2"
}

# shellcheck disable=SC2086 # LOADTEST_CMD is a command line
load_url() { # URL SESSIONS SECONDS
    if [[ $1 == */whep/* ]]; then
        # Each WHEP session is an engine of its own, which logs its start and end at info.
        RUST_LOG=${RUST_LOG:-warn} $LOADTEST_CMD "$1" --sessions "$2" --seconds "$3" --quiet --max-failure-rate 1
    else
        $LOADTEST_CMD "$1" --sessions "$2" --seconds "$3" --quiet --max-failure-rate 1
    fi
}
