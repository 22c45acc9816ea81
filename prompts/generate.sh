#!/usr/bin/env bash
# Generates the IVM voice prompts: English speech synthesised with espeak-ng, converted with
# sox to 8 kHz mono headerless G.711 μ-law (`<id>.ul`, one byte per sample), with the leading
# and trailing silence trimmed and 0.15 s of silence appended. `ivm-media/src/prompt.rs`
# embeds the files with `include_bytes!`.
#
# Usage: prompts/generate.sh            (writes the files next to this script)
#
# The output is deterministic for a given espeak-ng and sox version (no dither, no random
# numbers); the versions used are printed first. Installs espeak-ng and sox with apt-get when
# they are missing (as root, or via sudo).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

# Voice: US English at 150 words per minute — clear on a phone line.
VOICE=en-us
SPEED=150

# id|text. The ids are the file names and match `Prompt` in ivm-media/src/prompt.rs.
# The text is what espeak-ng reads. Where its default reading is wrong it is steered: "pin" in
# lower case (espeak-ng spells the capitals "PIN" out as "P I N"), and the verbs "replay" and
# "record" in phonemes ([[...]], espeak-ng's phoneme input) because it stresses them as nouns.
PROMPTS=(
    "welcome|You have reached your voice mailbox."
    "new_messages|new messages"
    "saved_messages|saved messages"
    "no_messages|You have no messages."
    "message_from|Message from"
    "still_recording|This message is still being recorded."
    "menu|Press 1 to join the sender, 2 to [[rI#pl'eI]], 3 to reply, 7 to delete, 9 to save, or pound for the next message."
    "deleted|Message deleted."
    "saved|Message saved."
    "enter_pin|Please enter your pin, followed by pound."
    "wrong_pin|That pin is not correct."
    "not_allowed|This message is not for you."
    "not_found|This message does not exist."
    "goodbye|Goodbye."
    "record_reply|[[rI#k'o@d]] your reply after the tone."
    "end_of_messages|No more messages."
    "unavailable|The person you are calling is not available. Your message will be delivered."
    "digit_0|zero"
    "digit_1|one"
    "digit_2|two"
    "digit_3|three"
    "digit_4|four"
    "digit_5|five"
    "digit_6|six"
    "digit_7|seven"
    "digit_8|eight"
    "digit_9|nine"
)

install_tools() {
    local missing=()
    command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
    command -v sox >/dev/null 2>&1 || missing+=(sox)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || {
            echo "generate.sh: need ${missing[*]}; run as root or install sudo" >&2
            exit 1
        }
        sudo=(sudo)
    fi
    echo "Installing ${missing[*]} ..." >&2
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

install_tools

echo "espeak-ng: $(espeak-ng --version | head -n 1)"
echo "sox:       $(sox --version | head -n 1 | sed "s/^sox: *//")"
echo

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

total=0
printf '%-16s %8s %8s\n' id bytes seconds
for entry in "${PROMPTS[@]}"; do
    id=${entry%%|*}
    text=${entry#*|}
    espeak-ng -v "$VOICE" -s "$SPEED" -w "$tmp/$id.wav" -- "$text"
    # -D: no dither, so the output is reproducible. The effects: trim silence at the start,
    # reverse and trim the (former) end, reverse back; normalise to -3 dBFS; resample to
    # 8 kHz (sox's band-limiting resampler); append 0.15 s of silence.
    sox -D "$tmp/$id.wav" -r 8000 -c 1 -e u-law -t raw "$tmp/$id.ul" \
        silence 1 0.05 0.5% reverse silence 1 0.05 0.5% reverse \
        norm -3 rate -v 8000 pad 0 0.15
    mv "$tmp/$id.ul" "$id.ul"
    size=$(stat -c %s "$id.ul")
    if [[ $size -eq 0 ]]; then
        echo "generate.sh: $id.ul is empty" >&2
        exit 1
    fi
    total=$((total + size))
    printf '%-16s %8d %8s\n' "$id" "$size" "$(awk -v n="$size" 'BEGIN { printf "%.2f", n / 8000 }')"
done
printf '%-16s %8d %8s\n' total "$total" "$(awk -v n="$total" 'BEGIN { printf "%.2f", n / 8000 }')"
