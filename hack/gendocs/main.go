// Command gendocs writes what the packages ship about kindnet's command
// line: one man page per command (cobra/doc, from the same command tree the
// binary runs) and the bash, zsh and fish completion scripts. It is a build
// tool run by `make packages`, not a command of the product.
//
//	go run ./hack/gendocs -out DIR -version 1.2.3 [-date 2006-01-02]
//
// writes DIR/man/*.1 and DIR/completions/{kindnet.bash,_kindnet,kindnet.fish}.
// The date defaults to $SOURCE_DATE_EPOCH (reproducible builds), else today.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/kindnet-dev/kindnet/pkg/cli"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("gendocs", flag.ContinueOnError)
	out := fs.String("out", "", "output directory (required)")
	version := fs.String("version", "", "kindnet version shown in the man pages (required)")
	date := fs.String("date", "", "date shown in the man pages, YYYY-MM-DD (default: $SOURCE_DATE_EPOCH, else today)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *version == "" || fs.NArg() != 0 {
		return errors.New("usage: gendocs -out DIR -version VERSION [-date YYYY-MM-DD]")
	}
	when, err := manDate(*date, os.Getenv("SOURCE_DATE_EPOCH"))
	if err != nil {
		return err
	}
	// An empty environment: the help texts show kindnet's defaults, not
	// whatever KINDNET_* variables the build machine happens to have.
	root := cli.NewRoot(io.Discard, io.Discard, nil)
	if err := writeMan(root, filepath.Join(*out, "man"), *version, when); err != nil {
		return err
	}
	return writeCompletions(root, filepath.Join(*out, "completions"))
}

func manDate(flagDate, epoch string) (time.Time, error) {
	switch {
	case flagDate != "":
		t, err := time.Parse("2006-01-02", flagDate)
		if err != nil {
			return time.Time{}, fmt.Errorf("-date %q: expected YYYY-MM-DD", flagDate)
		}
		return t, nil
	case epoch != "":
		sec, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: expected seconds since 1970", epoch)
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	return time.Now().UTC(), nil
}

// writeMan writes kindnet.1, kindnet-agent.1, kindnet-config-show.1, …
func writeMan(root *cobra.Command, dir, version string, when time.Time) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// cobra's "Auto generated … on <date>" footer would differ per build.
	disableAutoGenTag(root)
	header := &doc.GenManHeader{
		Section: "1",
		Date:    &when,
		Source:  "kindnet " + version,
		Manual:  "kindnet manual",
	}
	if err := doc.GenManTree(root, header, dir); err != nil {
		return fmt.Errorf("man pages into %s: %w", dir, err)
	}
	return nil
}

func disableAutoGenTag(c *cobra.Command) {
	c.DisableAutoGenTag = true
	for _, sub := range c.Commands() {
		disableAutoGenTag(sub)
	}
}

// writeCompletions writes the scripts `kindnet completion SHELL` prints.
func writeCompletions(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	gens := []struct {
		file string
		gen  func(io.Writer) error
	}{
		{"kindnet.bash", func(w io.Writer) error { return root.GenBashCompletionV2(w, true) }},
		{"_kindnet", root.GenZshCompletion},
		{"kindnet.fish", func(w io.Writer) error { return root.GenFishCompletion(w, true) }},
	}
	for _, g := range gens {
		path := filepath.Join(dir, g.file)
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		err = g.gen(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("completion %s: %w", path, err)
		}
	}
	return nil
}
