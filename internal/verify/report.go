package verify

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Report writes differences to a file as Run finds them, so a report of
// millions of lines never sits in memory.
type Report interface {
	Add(d Difference) error
	// Close writes what follows the differences (the JSON report's
	// summary) and flushes; it does not close the underlying writer.
	Close(s Summary) error
}

// csvHeader names the CSV report's columns.
var csvHeader = []string{"kind", "region", "source_bucket", "source_key", "destination_bucket", "destination_key",
	"source_size", "destination_size", "source_modified", "replicated_modified", "written_by_xrc", "detail"}

// CSVReport writes one row per difference, after a header row. Absent
// values (the destination size of a missing object) are empty cells;
// times are RFC 3339.
type CSVReport struct{ w *csv.Writer }

// NewCSVReport returns a CSV report writing to w.
func NewCSVReport(w io.Writer) (*CSVReport, error) {
	r := &CSVReport{w: csv.NewWriter(w)}
	if err := r.w.Write(csvHeader); err != nil {
		return nil, err
	}
	return r, nil
}

// Add writes d's row.
func (r *CSVReport) Add(d Difference) error {
	return r.w.Write([]string{string(d.Kind), d.Region, d.SourceBucket, textCell(d.SourceKey), d.DestinationBucket, textCell(d.DestinationKey),
		intCell(d.SourceSize), intCell(d.DestinationSize), timeCell(d.SourceModified), timeCell(d.ReplicatedModified),
		strconv.FormatBool(d.WrittenByXRC), textCell(d.Detail)})
}

// textCell keeps a spreadsheet from reading a key as a formula: keys are
// anyone's to name, and one like =HYPERLINK(...) would run when the
// report is opened. A leading ' is what spreadsheets take as "text"; a
// key that starts with ' gets one too, so dropping one leading ' always
// gives the key back (the JSON report holds keys as they are).
func textCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r'", rune(s[0])) {
		return "'" + s
	}
	return s
}

// Close flushes the rows; the summary goes to the terminal, not the CSV.
// A run that stopped before comparing everything ends with an
// "incomplete" row saying why: its rows alone (a header only, say) would
// read as a clean comparison.
func (r *CSVReport) Close(s Summary) error {
	if s.Error != "" {
		r.w.Write([]string{incomplete, "", "", "", "", "", "", "", "", "", "", textCell(s.Error)})
	}
	r.w.Flush()
	return r.w.Error()
}

// incomplete is the kind of the CSV report's last row when the run
// stopped before comparing everything.
const incomplete = "incomplete"

func intCell(p *int64) string {
	if p == nil {
		return ""
	}
	return strconv.FormatInt(*p, 10)
}

func timeCell(p *time.Time) string {
	if p == nil || p.IsZero() {
		return ""
	}
	return p.UTC().Format(time.RFC3339Nano)
}

// JSONReport writes {"differences": [...], "summary": {...}}: the
// differences streamed as found, the summary, known only at the end, last.
type JSONReport struct {
	w *bufio.Writer
	n int
}

// NewJSONReport returns a JSON report writing to w.
func NewJSONReport(w io.Writer) (*JSONReport, error) {
	r := &JSONReport{w: bufio.NewWriter(w)}
	if _, err := r.w.WriteString("{\"differences\": ["); err != nil {
		return nil, err
	}
	return r, nil
}

// Add writes d as the next element of differences.
func (r *JSONReport) Add(d Difference) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	sep := ",\n  "
	if r.n == 0 {
		sep = "\n  "
	}
	r.n++
	r.w.WriteString(sep)
	_, err = r.w.Write(b)
	return err
}

// Close writes the summary and ends the document.
func (r *JSONReport) Close(s Summary) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(r.w, "\n],\n\"summary\": %s}\n", b)
	return r.w.Flush()
}
