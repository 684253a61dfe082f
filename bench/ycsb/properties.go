package ycsb

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Properties are YCSB's settings: name=value pairs read from workload
// files (Java .properties syntax) and -p overrides.
type Properties map[string]string

// ParseProperties reads Java-properties text: "name=value", "name: value"
// or "name value" per line, "#" and "!" comments, a trailing backslash
// continuing a line. Later lines win.
func ParseProperties(r io.Reader) (Properties, error) {
	p := Properties{}
	sc := bufio.NewScanner(r)
	var cont strings.Builder
	for sc.Scan() {
		line := strings.TrimLeft(sc.Text(), " \t\f")
		if cont.Len() == 0 && (line == "" || line[0] == '#' || line[0] == '!') {
			continue
		}
		if strings.HasSuffix(line, `\`) && !strings.HasSuffix(line, `\\`) {
			cont.WriteString(line[:len(line)-1])
			continue
		}
		cont.WriteString(line)
		line = cont.String()
		cont.Reset()
		i := strings.IndexAny(line, "=: \t")
		if i < 0 {
			p[line] = ""
			continue
		}
		name := line[:i]
		value := strings.TrimLeft(line[i:], " \t")
		if value != "" && (value[0] == '=' || value[0] == ':') {
			value = value[1:]
		}
		p[name] = strings.TrimSpace(value)
	}
	return p, sc.Err()
}

// LoadProperties reads a workload file.
func LoadProperties(path string) (Properties, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := ParseProperties(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// SetOverride applies a "-p name=value" argument.
func (p Properties) SetOverride(arg string) error {
	name, value, ok := strings.Cut(arg, "=")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("ycsb: property %q is not name=value", arg)
	}
	p[strings.TrimSpace(name)] = strings.TrimSpace(value)
	return nil
}

func (p Properties) str(name, def string) string {
	if v, ok := p[name]; ok && v != "" {
		return v
	}
	return def
}

func (p Properties) int64(name string, def int64) (int64, error) {
	v, ok := p[name]
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("ycsb: %s=%q: %w", name, v, err)
	}
	return n, nil
}

func (p Properties) float(name string, def float64) (float64, error) {
	v, ok := p[name]
	if !ok || v == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("ycsb: %s=%q: %w", name, v, err)
	}
	return f, nil
}
