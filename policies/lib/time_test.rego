package lib.time_test

import rego.v1

import data.lib.time as ltime

test_utc_designator_is_accepted if {
	ltime.parse_ns("1970-01-01T00:00:01Z") == 1000000000
	ltime.parse_ns("2024-01-01T00:00:00Z") == 1704067200000000000
}

test_offsets_and_fractions if {
	ltime.parse_ns("2024-01-01T01:00:00+01:00") == ltime.parse_ns("2024-01-01T00:00:00Z")
	ltime.parse_ns("2023-12-31T19:00:00-05:00") == 1704067200000000000
	ltime.parse_ns("2024-01-01T00:00:00.5Z") == 1704067200500000000
}

test_unparseable_time_is_undefined if {
	# undefined, so precedence built on it cannot be established (tasks.task_order then denies)
	not ltime.parse_ns("yesterday")
	not ltime.parse_ns("")
	not ltime.parse_ns("2024-01-01")
}
