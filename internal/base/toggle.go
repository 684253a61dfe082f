package base

// Toggle is every on/off setting of the engine (full_page_writes,
// data_checksums, synchronous_commit, autovacuum). Its zero value is On,
// PostgreSQL's default for each of them, so that a zero configuration
// struct means the defaults.
type Toggle int8

const (
	On  Toggle = 0
	Off Toggle = 1
)

func (t Toggle) String() string {
	switch t {
	case On:
		return "on"
	case Off:
		return "off"
	}
	return "Toggle(invalid)"
}

// Valid reports whether t is On or Off.
func (t Toggle) Valid() bool { return t == On || t == Off }
