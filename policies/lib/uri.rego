package lib.uri

# Canonical forms of the locations a policy compares with an allow-list: git repositories (source
# materials, task definitions from the git resolver) and other URLs (builder IDs). Read the way git and
# RFC 3986 read them, so that two spellings of one location compare equal and a spelling that leaves an
# allowed location (dot segments, userinfo, another port) compares unequal:
#
#   * scheme and host are case-insensitive; a trailing dot of the host is dropped; a default port
#     (https 443, http 80, ssh 22, git 9418) is the same as none; userinfo is not part of the location;
#   * "git+https" is "https"; the scp-like form "[user@]host:path" is ssh; for git repositories the
#     transport does not matter (https, http, ssh and git URLs of one host and path name one repository);
#   * dot segments are removed (RFC 3986 5.2.4); escapes of unreserved characters are decoded;
#   * a trailing "/" and, for git repositories, a trailing ".git" are dropped.
#
# Whatever cannot be read unambiguously is undefined, and the rules deny it: characters outside printable
# ASCII, a query or fragment, a backslash, an empty path segment, ".." above the root, an escape of a
# reserved character (an encoded "/" must not become a separator, an encoded "." segment not a dot
# segment), an IP literal, an "@" in userinfo, a port that is not a number, more than 64 segments or
# 2048 characters, a scheme-less "host/path" (git reads that as a local path).

_max_length := 2048

_max_segments := 64

_default_ports := {"https": "443", "http": "80", "ssh": "22", "git": "9418"}

_git_transports := {"https", "http", "ssh", "git"}

# parse(uri): {"scheme", "host", "port" ("" for the default), "segments"}; undefined when uri cannot be
# canonicalised.
parse(uri) := {"scheme": parts.scheme, "host": host, "port": port, "segments": segments} if {
	is_string(uri)
	count(uri) <= _max_length
	regex.match(`^[!-~]+$`, uri)
	not _has_any(uri, ["?", "#", "\\"])
	parts := _split(uri)
	authority := _authority(parts.authority)
	host := _host(authority.host)
	port := _port(authority.port, parts.scheme)
	segments := _segments(parts.path)
}

_has_any(s, needles) if {
	some needle in needles
	contains(s, needle)
}

# "scheme://authority/path"; "git+" in front of a scheme is the same transport.
_split(uri) := {"scheme": scheme, "authority": authority, "path": path} if {
	regex.match(`^[A-Za-z][A-Za-z0-9+.-]*://`, uri)
	i := indexof(uri, "://")
	scheme := trim_prefix(lower(substring(uri, 0, i)), "git+")
	rest := substring(uri, i + 3, -1)
	[authority, path] := _cut(rest, indexof(rest, "/"))
}

# scp-like "[user@]host:path", as git reads it: a ":" before any "/" and no "://".
_split(uri) := {"scheme": "ssh", "authority": authority, "path": path} if {
	not contains(uri, "://")
	colon := indexof(uri, ":")
	colon > 0
	slash := indexof(uri, "/")
	_before(colon, slash)
	authority := substring(uri, 0, colon)
	rest := substring(uri, colon + 1, -1)
	path := concat("", ["/", trim_prefix(rest, "/")])
}

_before(_, j) if j == -1

_before(i, j) if i < j

_cut(s, i) := [s, ""] if i == -1

_cut(s, i) := [substring(s, 0, i), substring(s, i, -1)] if i >= 0

# userinfo (everything before the "@") is dropped: "https://allowed@evil/" is evil's.
_authority(authority) := {"host": hp[0], "port": _port_text(hp)} if {
	at := split(authority, "@")
	count(at) <= 2
	hp := split(at[count(at) - 1], ":")
	count(hp) <= 2
}

_port_text(hp) := hp[1] if count(hp) == 2

else := ""

_host(raw) := host if {
	host := trim_suffix(lower(raw), ".")
	regex.match(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`, host)
}

_port(text, _) := "" if text == ""

_port(text, scheme) := port if {
	regex.match(`^[0-9]+$`, text) # no counted repetition: see lib.image
	count(text) <= 5
	n := to_number(text)
	n >= 1
	n <= 65535
	port := _non_default(format_int(n, 10), scheme)
}

_non_default(port, scheme) := "" if port == object.get(_default_ports, scheme, "")

else := port

# The path's segments, trailing "/" dropped, dot segments removed and unreserved escapes decoded.
_segments(path) := decoded if {
	raw := split(trim_right(path, "/"), "/")
	body := array.slice(raw, 1, count(raw))
	count(body) <= _max_segments
	every s in body {
		s != ""
	}
	resolved := _remove_dots(body)
	decoded := [_decode(s) | some s in resolved]
	count(decoded) == count(resolved)
}

_remove_dots(segments) := segments if {
	not _has_dot_segment(segments)
} else := [s |
	some i, s in segments
	not s in {".", ".."}
	_survives(depths, i)
] if {
	depths := [_depth(segments, k) | some k, _ in segments]
	every d in depths {
		d >= 0
	}
}

_has_dot_segment(segments) if {
	some s in segments
	s in {".", ".."}
}

# How deep the path is after its first k+1 segments; ".." climbing above the root makes it negative.
_depth(segments, k) := count([1 | some j, s in segments; j <= k; not s in {".", ".."}]) - count([1 |
	some j, s in segments
	j <= k
	s == ".."
])

# A segment stays unless a later ".." climbs back above it.
_survives(depths, i) if {
	every j, d in depths {
		_not_above(j, i, d, depths[i])
	}
}

_not_above(j, i, _, _) if j <= i

_not_above(j, i, d, level) if {
	j > i
	d >= level
}

# Only escapes of unreserved characters (RFC 3986 2.3) are decoded; any other "%" is undefined. A segment
# that decodes to "." or ".." was an encoded dot segment: undefined too.
_decode(s) := s if {
	not contains(s, "%")
} else := decoded if {
	regex.match(`^(?:[^%]|%(?:2[DEde]|3[0-9]|4[1-9A-Fa-f]|5[0-9Aa]|5[Ff]|6[1-9A-Fa-f]|7[0-9Aa]|7[Ee]))*$`, s)
	decoded := strings.replace_n(_unreserved_escapes, s)
	not decoded in {".", ".."}
}

_unreserved_escapes := {"%41": "A", "%42": "B", "%43": "C", "%44": "D", "%45": "E", "%46": "F", "%47": "G", "%48": "H", "%49": "I", "%4A": "J", "%4a": "J", "%4B": "K", "%4b": "K", "%4C": "L", "%4c": "L", "%4D": "M", "%4d": "M", "%4E": "N", "%4e": "N", "%4F": "O", "%4f": "O", "%50": "P", "%51": "Q", "%52": "R", "%53": "S", "%54": "T", "%55": "U", "%56": "V", "%57": "W", "%58": "X", "%59": "Y", "%5A": "Z", "%5a": "Z", "%61": "a", "%62": "b", "%63": "c", "%64": "d", "%65": "e", "%66": "f", "%67": "g", "%68": "h", "%69": "i", "%6A": "j", "%6a": "j", "%6B": "k", "%6b": "k", "%6C": "l", "%6c": "l", "%6D": "m", "%6d": "m", "%6E": "n", "%6e": "n", "%6F": "o", "%6f": "o", "%70": "p", "%71": "q", "%72": "r", "%73": "s", "%74": "t", "%75": "u", "%76": "v", "%77": "w", "%78": "x", "%79": "y", "%7A": "z", "%7a": "z", "%30": "0", "%31": "1", "%32": "2", "%33": "3", "%34": "4", "%35": "5", "%36": "6", "%37": "7", "%38": "8", "%39": "9", "%2D": "-", "%2d": "-", "%2E": ".", "%2e": ".", "%5F": "_", "%5f": "_", "%7E": "~", "%7e": "~"}

# url(uri): a canonical URL, "scheme://host[:port]/seg/..." (builder IDs and other identifiers).
url(uri) := concat("", [p.scheme, "://", _hostport(p), _path_text(p.segments)]) if p := parse(uri)

_hostport(p) := p.host if p.port == ""

else := concat(":", [p.host, p.port])

_path_text(segments) := "" if count(segments) == 0

else := concat("", ["/", concat("/", segments)])

# git_repo(uri): the canonical location of a git repository, "host[:port]/seg/...", transport and a
# trailing ".git" dropped. Undefined for other schemes (file, ftp, ...) and for a host without a path.
git_repo(uri) := concat("/", location) if {
	location := git_location(uri)
	count(location) > 1
}

# git_location(uri): [host[:port], seg, ...] of a git repository, possibly just the host (an entry such
# as "https://github.com/" that admits the whole host).
git_location(uri) := array.concat([_hostport(p)], _strip_git(p.segments)) if {
	p := parse(uri)
	p.scheme in _git_transports
}

_strip_git(segments) := segments if count(segments) == 0

else := array.concat(array.slice(segments, 0, n - 1), [last]) if {
	n := count(segments)
	last := trim_suffix(segments[n - 1], ".git")
	last != ""
}

# An allow-list entry: {"location": [...], "subtree": bool}. An entry ending in "/" admits every location
# strictly below it, by whole segments ("github.com/org/" admits "github.com/org/app", never
# "github.com/org-evil/app"); any other entry admits exactly itself.
git_entry(entry) := {"location": location, "subtree": endswith(entry, "/")} if {
	location := git_location(entry)
}

# matches(location, entry): the location is the entry's, or strictly below a subtree entry.
matches(location, entry) if {
	not entry.subtree
	location == entry.location
}

matches(location, entry) if {
	entry.subtree
	n := count(entry.location)
	count(location) > n
	array.slice(location, 0, n) == entry.location
}
