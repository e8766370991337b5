# Shared by the tutorials: the lab they use, the explanations in the learner's language, a
# heading printer, and clean-up on exit.
# A tutorial runs on a lab that is up (`sudo netlab up`); NETLAB_NAME picks another lab.
set -euo pipefail
export NETLAB_NAME=${NETLAB_NAME:-netlab}
cleanup=()
on_exit() { for c in "${cleanup[@]}"; do eval "$c" >/dev/null 2>&1 || true; done; }
trap on_exit EXIT

# The explanations are gettext messages: English in the scripts, Korean in po/ko.po. NETLAB_LANG
# picks the language (ko or en; by default a Korean locale gives ko), or several: "ko,en" prints
# each explanation in Korean, then English. Commands and checks are the same in every language.
# A message names a variable as $name inside single quotes; gettext substitutes it after
# translating, so every language prints the value.
. gettext.sh
_langs=${NETLAB_LANG:-}
if [ -z "$_langs" ]; then
  case "${LC_ALL:-${LC_MESSAGES:-${LANG:-}}}" in ko*) _langs=ko ;; *) _langs=en ;; esac
fi
IFS=, read -ra _langs <<<"$_langs"
_catalog=
if [[ " ${_langs[*]} " == *" ko "* ]]; then
  _catalog=$(mktemp -d)
  cleanup+=("rm -rf '$_catalog'")
  mkdir -p "$_catalog/ko/LC_MESSAGES"
  msgfmt -o "$_catalog/ko/LC_MESSAGES/netlab-tutorials.mo" "$(dirname "${BASH_SOURCE[0]}")/po/ko.po"
fi
# One message in one language. LANGUAGE is honoured only under a locale other than C, and
# C.UTF-8 is always there.
_in() {
  if [ "$1" = ko ]; then
    TEXTDOMAIN=netlab-tutorials TEXTDOMAINDIR=$_catalog LANGUAGE=ko LC_ALL=C.UTF-8 eval_gettext "$2"
  else
    TEXTDOMAIN=netlab-tutorials TEXTDOMAINDIR=/nonexistent eval_gettext "$2"
  fi
}
# Each message in every chosen language: the first as given ($1 is a printf format), the others
# indented below it.
_say() {
  local fmt=$1 msg=$2 lang first=1
  for lang in "${_langs[@]}"; do
    if [ $first = 1 ]; then printf "$fmt" "$(_in "$lang" "$msg")"; first=0
    else printf '   %s\n' "$(_in "$lang" "$msg")"; fi
  done
}
say() { _say '%s\n' "$1"; }
step() { echo; _say '\033[1m== %s\033[0m\n' "$1"; }
title() { _say "\033[1m$(basename "$0" | cut -c1-2) · %s\033[0m\n" "$1"; }
about() { _say '%s\n' "$1"; }
run() { printf '$ %s\n' "$*"; "$@"; }
