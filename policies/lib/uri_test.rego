package lib.uri_test

import rego.v1

import data.lib.uri

repo := "github.com/org/app"

# Spellings git and RFC 3986 read as one repository.
test_scheme_and_host_case_do_not_matter if {
	uri.git_repo("HTTPS://GitHub.COM/org/app") == repo
	uri.git_repo("Git+Https://github.com/org/app") == repo
	uri.git_repo("https://GITHUB.com./org/app") == repo

	# the path keeps its case: servers may tell Org from org
	uri.git_repo("https://github.com/Org/App") == "github.com/Org/App"
}

test_transports_name_one_repository if {
	every u in [
		"https://github.com/org/app",
		"git+https://github.com/org/app.git",
		"http://github.com/org/app",
		"ssh://git@github.com/org/app.git",
		"git+ssh://git@github.com/org/app",
		"git://github.com/org/app.git",
		"git@github.com:org/app.git",
		"github.com:org/app",
		"git@github.com:/org/app",
	] {
		uri.git_repo(u) == repo
	}

	# scp-like with a path of one segment
	uri.git_repo("git@example.com:app.git") == "example.com/app"
}

test_default_ports_are_dropped_and_others_kept if {
	uri.git_repo("https://github.com:443/org/app") == repo
	uri.git_repo("http://github.com:80/org/app") == repo
	uri.git_repo("ssh://git@github.com:22/org/app") == repo
	uri.git_repo("git://github.com:9418/org/app") == repo
	uri.git_repo("https://github.com:0443/org/app") == repo
	uri.git_repo("https://github.com:/org/app") == repo

	# another port is another server
	uri.git_repo("https://github.com:8443/org/app") == "github.com:8443/org/app"
	uri.git_repo("ssh://github.com:443/org/app") == "github.com:443/org/app"
	not uri.git_repo("https://github.com:0/org/app")
	not uri.git_repo("https://github.com:65536/org/app")
	not uri.git_repo("https://github.com:https/org/app")
	not uri.git_repo("https://github.com:44:3/org/app")

	# at most five digits, leading zeros counted
	uri.git_repo("https://github.com:65535/org/app") == "github.com:65535/org/app"
	uri.git_repo("https://github.com:08443/org/app") == "github.com:8443/org/app"
	not uri.git_repo("https://github.com:008443/org/app")
	not uri.git_repo("https://github.com:+443/org/app")
}

test_dot_segments_are_removed if {
	uri.git_repo("https://github.com/org/./app") == repo
	uri.git_repo("https://github.com/org/x/../app") == repo
	uri.git_repo("https://github.com/org/app/.") == repo
	uri.git_repo("https://github.com/x/y/../../org/app.git") == repo

	# removing them can leave the allowed prefix: what is compared is where the path ends up
	uri.git_repo("https://github.com/org/app/../../evil/app") == "github.com/evil/app"
	uri.git_repo("git@github.com:org/../evil/app") == "github.com/evil/app"
}

test_dot_segments_above_the_root_are_undefined if {
	not uri.git_repo("https://github.com/../org/app")
	not uri.git_repo("https://github.com/org/../../x/app")
	not uri.git_repo("git@github.com:../org/app")
	not uri.git_repo("https://github.com/org/app/../../..")
}

test_userinfo_is_not_part_of_the_location if {
	uri.git_repo("https://user@github.com/org/app") == repo
	uri.git_repo("https://user:secret@github.com/org/app") == repo

	# the host is what follows the "@"
	uri.git_repo("https://github.com@evil.example/org/app") == "evil.example/org/app"
	uri.git_repo("https://github.com:443@evil.example/org/app") == "evil.example/org/app"

	# an "@" inside userinfo would have to be escaped
	not uri.git_repo("https://a@github.com@evil.example/org/app")
}

test_unreserved_escapes_are_decoded if {
	uri.git_repo("https://github.com/%6Frg/%61pp") == repo
	uri.git_repo("https://github.com/org/ap%70.git") == repo
	uri.git_repo("https://github.com/org/a%2Db%5fc%7e") == "github.com/org/a-b_c~"
	uri.git_repo("https://github.com/org/a%2eb") == "github.com/org/a.b"
}

test_escapes_that_would_change_the_path_are_undefined if {
	# an encoded "/" must not become a separator, an encoded dot segment not a dot segment
	not uri.git_repo("https://github.com/org%2Fapp")
	not uri.git_repo("https://github.com/org%2fapp")
	not uri.git_repo("https://github.com/org/%2e%2e/evil/app")
	not uri.git_repo("https://github.com/org/%2E/app")
	not uri.git_repo("https://github.com/org/.%2e/evil")

	# escapes of other reserved characters, double escapes and broken escapes
	not uri.git_repo("https://github.com/org/app%40x")
	not uri.git_repo("https://github.com/org/%252e%252e")
	not uri.git_repo("https://github.com/org/app%")
	not uri.git_repo("https://github.com/org/app%zz")
	not uri.git_repo("https://github.com/org/app%4")
	not uri.git_repo("https://git%68ub.com/org/app")
}

test_trailing_slash_and_git_suffix if {
	uri.git_repo("https://github.com/org/app/") == repo
	uri.git_repo("https://github.com/org/app.git/") == repo
	uri.git_repo("https://github.com/org/app///") == repo

	# only the last segment loses ".git", and a repository called ".git" is no name at all
	uri.git_repo("https://github.com/org.git/app") == "github.com/org.git/app"
	not uri.git_repo("https://github.com/org/.git")
}

test_what_cannot_be_canonicalised_is_undefined if {
	every u in [
		"gitspam.spam/spam/spam", # git reads a scheme-less host/path as a local path
		"/srv/git/app",
		"file:///srv/git/app",
		"ftp://github.com/org/app",
		"https://github.com/org/app?ref=main",
		"https://github.com/org/app#main",
		"https://github.com\\org\\app",
		"https://github.com//org/app",
		"https://[::1]/org/app",
		"https://git_hub.com/org/app",
		"https://-github.com/org/app",
		"https:///org/app",
		"https://github.com",
		"https://github.com/",
		"https://git hub.com/org/app",
		"https://gíthub.com/org/app",
		"https://github.com/org/app\n",
		"",
		5,
		null,
	] {
		not uri.git_repo(u)
	}
}

test_inputs_are_bounded if {
	deep := concat("/", [x | some _ in numbers.range(1, 65); x := "a"])
	not uri.git_repo(concat("/", ["https://github.com", deep]))
	ok := concat("/", [x | some _ in numbers.range(1, 64); x := "a"])
	uri.git_repo(concat("/", ["https://github.com", ok])) == concat("/", ["github.com", ok])
	long := concat("", [x | some _ in numbers.range(1, 2030); x := "a"])
	not uri.git_repo(concat("/", ["https://github.com/org", long]))
}

test_parse if {
	uri.parse("git+SSH://git@GitHub.com:2222/a/./b/../c.git") == {
		"scheme": "ssh", "host": "github.com", "port": "2222", "segments": ["a", "c.git"],
	}
	uri.parse("https://github.com") == {"scheme": "https", "host": "github.com", "port": "", "segments": []}
}

test_url_keeps_the_scheme_and_the_git_suffix if {
	chains := "https://tekton.dev/chains/v2"
	uri.url("https://tekton.dev/chains/v2") == chains
	uri.url("HTTPS://Tekton.Dev:443/chains/v2/") == chains
	uri.url("https://tekton.dev/chains/./x/../v2") == chains
	uri.url("https://builder@tekton.dev/chains/v2") == chains
	uri.url("http://tekton.dev/chains/v2") == "http://tekton.dev/chains/v2"
	uri.url("https://tekton.dev:8443/chains/v2") == "https://tekton.dev:8443/chains/v2"
	uri.url("spiffe://Example.org/ns/ci/sa/builder") == "spiffe://example.org/ns/ci/sa/builder"
	uri.url("https://example.org/app.git") == "https://example.org/app.git"
	uri.url("https://example.org") == "https://example.org"
	not uri.url("https://tekton.dev/chains/../../v2")
	not uri.url("https://tekton.dev/chains/v2?x")
	not uri.url("tekton-chains")
}

entry(e) := uri.git_entry(e)

test_entries_match_whole_segments if {
	org := entry("https://github.com/org/")
	uri.matches(uri.git_location("https://github.com/org/app"), org)
	uri.matches(uri.git_location("git@github.com:org/team/app.git"), org)
	not uri.matches(uri.git_location("https://github.com/org-evil/app"), org)
	not uri.matches(uri.git_location("https://github.com/organisation/app"), org)

	# a subtree entry admits what lies below it, not itself
	not uri.matches(uri.git_location("https://github.com/org"), org)
	not uri.matches(uri.git_location("https://github.com:8443/org/app"), org)
	not uri.matches(uri.git_location("https://evil.example/org/app"), org)
}

test_exact_entries_match_one_repository if {
	app := entry("git+https://github.com/org/app.git")
	app.subtree == false
	uri.matches(uri.git_location("https://GitHub.com/org/app/"), app)
	uri.matches(uri.git_location("git@github.com:org/app"), app)
	not uri.matches(uri.git_location("https://github.com/org/app/sub"), app)
	not uri.matches(uri.git_location("https://github.com/org/app-evil"), app)
	not uri.matches(uri.git_location("https://github.com/org"), app)
}

test_whole_host_entries if {
	host := entry("https://github.com/")
	host == {"location": ["github.com"], "subtree": true}
	uri.matches(uri.git_location("https://github.com/any/app"), host)
	not uri.matches(uri.git_location("https://github.com.evil.example/any/app"), host)
	not uri.matches(uri.git_location("https://evil.example/github.com/app"), host)
}

test_entries_that_are_no_location if {
	not entry("github.com/org/")
	not entry("https://github.com/org/%2e%2e/")
	not entry(["https://github.com/org/"])
}
