# Sourced by scripts/setup.sh and cross/fetch-base-debs.sh: one way to refresh apt's package lists.
#
# Why tolerant: a Debian mirror in the middle of a sync answers some index files with the wrong size
# ("File has unexpected size ... Mirror sync in progress?") and `apt-get update` then exits 100 even though
# every other index was refreshed. What matters is whether the install or download that follows finds its
# packages, so the refresh is retried a few times and, if the mirror still disagrees, the lists apt has are
# used and the following apt-get call gives the real error if something is truly missing.

# apt_update: refresh the lists, up to 3 attempts (10 s then 30 s apart; APT_RETRY_DELAY=N scales that to N and
# 3N); never fails the caller.
apt_update() {
  local sudo=${SUDO:-} attempt delay
  for attempt in 1 2 3; do
    if $sudo apt-get -o Acquire::Retries=3 update -qq; then return 0; fi
    case $attempt in 1) delay=${APT_RETRY_DELAY:-10} ;; 2) delay=$(( ${APT_RETRY_DELAY:-10} * 3 )) ;; *) break ;; esac
    echo "apt: package list refresh failed (attempt $attempt of 3); retrying in ${delay}s" >&2
    sleep "$delay"
  done
  echo "apt: some package lists could not be refreshed; going on with the lists apt has" >&2
  return 0
}
