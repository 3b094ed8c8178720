package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// EnvConfigFile names the config file when --config is not given.
const EnvConfigFile = "KINDNET_CONFIG"

// Error is a configuration problem: which field, the value given, where it
// came from and what was expected. Every error Load and Validate return
// wraps at least one *Error, so callers can tell "bad config" (exit 2) apart
// from other failures with errors.As.
type Error struct {
	Field  string // YAML key, e.g. "clusterCIDRs[1]"; empty for file-level problems
	Value  string // the offending value, as given
	Origin string // "file /etc/kindnet/config.yaml", "env KINDNET_CNI_MTU", "flag --cni-mtu", "default"
	Msg    string // what is wrong and what is expected
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.Field != "" {
		b.WriteString(e.Field)
		if e.Value != "" {
			fmt.Fprintf(&b, " = %q", e.Value)
		}
		if e.Origin != "" && e.Origin != "default" {
			fmt.Fprintf(&b, " (from %s)", e.Origin)
		}
		b.WriteString(": ")
	} else if e.Origin != "" {
		b.WriteString(e.Origin + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Sources says where the layers of configuration come from.
type Sources struct {
	// File is the config file. When FileRequired is false a missing file is
	// fine (the defaults apply); an explicitly named file must exist.
	File         string
	FileRequired bool
	// Environ is the process environment (os.Environ()).
	Environ []string
	// Flags holds the flags registered by BindFlags; only flags the user set
	// override anything.
	Flags *pflag.FlagSet
}

// Loaded is a configuration together with where each field's value came from.
type Loaded struct {
	Config
	// File is the config file the values were read from; "" when none was.
	File   string
	origin map[string]string
}

// Origin says where a key's value came from ("default" when nobody set it).
func (l *Loaded) Origin(key string) string {
	if o, ok := l.origin[key]; ok {
		return o
	}
	return "default"
}

// Load layers defaults < file < env < flags and validates the result. It
// returns every problem it finds at once, each as an *Error.
func Load(src Sources) (*Loaded, error) {
	l := &Loaded{Config: Defaults(), origin: map[string]string{}}
	fileErrs, fatal := l.loadFile(src.File, src.FileRequired)
	if fatal != nil {
		return nil, fatal // nothing sensible to validate
	}
	errs := []error{fileErrs, l.loadEnv(src.Environ), l.loadFlags(src.Flags)}
	if l.NodeName == "" {
		l.NodeName = defaultNodeName()
		l.origin["nodeName"] = "hostname"
	}
	errs = append(errs, l.Validate())
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return l, nil
}

// Validate checks the loaded configuration, naming where bad values came from.
func (l *Loaded) Validate() error { return validate(&l.Config, l.Origin) }

// loadFile reads the YAML file. Unknown keys are returned as errors while
// the known ones still apply, so one run reports every problem; a file that
// cannot be read or decoded at all is fatal.
func (l *Loaded) loadFile(path string, required bool) (errs error, fatal error) {
	if path == "" {
		return nil, nil
	}
	origin := "file " + path
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !required {
		return nil, nil
	}
	if err != nil {
		return nil, &Error{Origin: origin, Msg: fmt.Sprintf("cannot read: %v", errors.Unwrap(err))}
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, &Error{Origin: origin, Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")}
	}
	l.File = path
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return nil, nil // an empty or all-comments file: defaults
	}
	var tree map[string]any
	if err := json.Unmarshal(js, &tree); err != nil {
		return nil, &Error{Origin: origin, Msg: "expected a mapping of settings at the top level"}
	}
	var unknown []error
	for _, key := range leafKeys(tree, "") {
		if _, ok := fieldByKey(key); !ok {
			unknown = append(unknown, &Error{Field: key, Origin: origin, Msg: unknownKeyHint(key)})
			continue
		}
		l.origin[key] = origin
	}
	if err := json.Unmarshal(js, &l.Config); err != nil {
		return nil, decodeError(err, origin)
	}
	return errors.Join(unknown...), nil
}

// leafKeys lists the dotted keys of a decoded YAML tree. Sections (masquerade,
// cni) are descended into; anything else is a leaf.
func leafKeys(tree map[string]any, prefix string) []string {
	var out []string
	for k, v := range tree {
		key := prefix + k
		if v == nil && isSection(key) {
			continue // "cni:" with every setting commented out
		}
		if sub, ok := v.(map[string]any); ok && isSection(key) {
			out = append(out, leafKeys(sub, key+".")...)
			continue
		}
		out = append(out, key)
	}
	sort.Strings(out)
	return out
}

func isSection(key string) bool {
	for _, f := range fields {
		if strings.HasPrefix(f.key, key+".") {
			return true
		}
	}
	return false
}

// unknownKeyHint suggests the known key or section closest to a mistyped one.
func unknownKeyHint(key string) string {
	best, bestScore := "", 1<<30
	for _, f := range fields {
		candidates := []string{f.key}
		if i := strings.IndexByte(f.key, '.'); i > 0 {
			candidates = append(candidates, f.key[:i]) // the section
		}
		for _, c := range candidates {
			if d := editDistance(strings.ToLower(key), strings.ToLower(c)); d < bestScore {
				best, bestScore = c, d
			}
		}
	}
	if bestScore <= 3 {
		return fmt.Sprintf("unknown key; did you mean %q?", best)
	}
	return "unknown key; known keys are " + strings.Join(Keys(), ", ")
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// decodeError turns encoding/json's errors into ones naming the key.
func decodeError(err error, origin string) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return &Error{Field: te.Field, Value: te.Value, Origin: origin,
			Msg: fmt.Sprintf("wrong type: expected %s", describeType(te.Type.String()))}
	}
	// Errors from our own UnmarshalJSON (durations) carry the value already;
	// encoding/json does not say which key, so find it by type.
	msg := err.Error()
	if strings.Contains(msg, "duration") {
		return &Error{Field: "resyncInterval", Origin: origin, Msg: msg}
	}
	return &Error{Origin: origin, Msg: msg}
}

func describeType(t string) string {
	switch t {
	case "string":
		return "a string"
	case "[]string":
		return "a list of strings"
	case "bool":
		return "true or false"
	case "int":
		return "a whole number"
	case "config.Masquerade", "config.CNI", "config.CRI":
		return "a mapping of settings"
	}
	return t
}

func (l *Loaded) loadEnv(environ []string) error {
	var errs []error
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, "KINDNET_") || name == EnvConfigFile {
			continue
		}
		f, found := fieldByEnv(name)
		if !found {
			errs = append(errs, &Error{Origin: "env " + name, Msg: "unknown variable; known variables are " + strings.Join(envNames(), ", ")})
			continue
		}
		origin := "env " + name
		if err := f.set(&l.Config, val); err != nil {
			errs = append(errs, &Error{Field: f.key, Value: val, Origin: origin, Msg: err.Error()})
			continue
		}
		l.origin[f.key] = origin
	}
	return errors.Join(errs...)
}

func fieldByEnv(name string) (field, bool) {
	for _, f := range fields {
		if f.EnvName() == name {
			return f, true
		}
	}
	return field{}, false
}

func envNames() []string {
	out := []string{EnvConfigFile}
	for _, f := range fields {
		out = append(out, f.EnvName())
	}
	return out
}

// flagValue is a pflag.Value that records the raw text; Load applies it with
// the same parser as the environment, so both accept exactly the same values.
type flagValue struct {
	raw    string
	isBool bool
	def    string
	typ    string
}

func (v *flagValue) String() string {
	if v.raw == "" {
		return v.def
	}
	return v.raw
}
func (v *flagValue) Set(s string) error { v.raw = s; return nil }
func (v *flagValue) Type() string       { return v.typ }
func (v *flagValue) IsBoolFlag() bool   { return v.isBool }

// BindFlags registers one flag per config key (e.g. --cni-mtu) on fs.
func BindFlags(fs *pflag.FlagSet) {
	d := Defaults()
	for _, f := range fields {
		v := &flagValue{isBool: f.isBool(&d), def: f.get(&d), typ: f.typeName(&d)}
		fl := fs.VarPF(v, f.FlagName(), "", fmt.Sprintf("%s (key %s, env %s)", f.usage, f.key, f.EnvName()))
		if v.isBool {
			fl.NoOptDefVal = "true"
		}
		if v.def == "" {
			fl.DefValue = ""
		}
	}
}

func (l *Loaded) loadFlags(fs *pflag.FlagSet) error {
	if fs == nil {
		return nil
	}
	var errs []error
	for _, f := range fields {
		fl := fs.Lookup(f.FlagName())
		if fl == nil || !fl.Changed {
			continue
		}
		origin := "flag --" + f.FlagName()
		raw := fl.Value.(*flagValue).raw
		if err := f.set(&l.Config, raw); err != nil {
			errs = append(errs, &Error{Field: f.key, Value: raw, Origin: origin, Msg: err.Error()})
			continue
		}
		l.origin[f.key] = origin
	}
	return errors.Join(errs...)
}

// Render prints the effective configuration as YAML, one line per key with
// its origin as a comment, for `kindnet config show`.
func (l *Loaded) Render() string {
	var b strings.Builder
	for _, f := range fields {
		fmt.Fprintf(&b, "%s: %s  # %s\n", f.key, f.get(&l.Config), l.Origin(f.key))
	}
	return b.String()
}
