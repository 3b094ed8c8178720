package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// iperfPort is where every benchmark iperf3 server listens, each inside
// its own namespace.
const iperfPort = "5201"

// iperfResult is the part of `iperf3 -J` output the benchmark reads.
type iperfResult struct {
	End struct {
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// parseIperf returns the received throughput in Gbit/s of an `iperf3 -J`
// run (the sum over all streams).
func parseIperf(out []byte) (float64, error) {
	var r iperfResult
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("iperf3 JSON: %w", err)
	}
	if r.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.End.SumReceived.BitsPerSecond <= 0 {
		return 0, errors.New("iperf3 reported no received data")
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, nil
}

// iperf runs one bounded iperf3 client from namespace ns to dst and
// returns the throughput in Gbit/s.
func iperf(ctx context.Context, ns string, dst netip.Addr, seconds, omit, streams int) (float64, error) {
	args := []string{"iperf3", "-c", dst.String(), "-p", iperfPort, "-J",
		"-t", strconv.Itoa(seconds), "-O", strconv.Itoa(omit), "-P", strconv.Itoa(streams),
		"--connect-timeout", "3000"}
	limit := time.Duration(seconds+omit)*time.Second + 20*time.Second
	out, err := runInNS(ctx, limit, ns, args...)
	if err != nil {
		// iperf3 -J prints its error as JSON on stdout too.
		if _, perr := parseIperf(out); perr != nil && len(out) > 0 {
			return math.NaN(), fmt.Errorf("%w (%v)", err, perr)
		}
		return math.NaN(), err
	}
	return parseIperf(out)
}

// RTT is what one ping run gave, in microseconds.
type RTT struct {
	Median float64
	P99    float64
	Sent   int
	Got    int
}

// parsePing reads the per-reply "time=0.052 ms" values of ping's output.
func parsePing(out []byte, sent int) (RTT, error) {
	var us []float64
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		_, after, ok := strings.Cut(sc.Text(), " time=")
		if !ok {
			continue
		}
		f := strings.Fields(after)
		if len(f) < 2 || f[1] != "ms" {
			continue
		}
		ms, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		us = append(us, ms*1000)
	}
	r := RTT{Sent: sent, Got: len(us)}
	if len(us) < (sent+1)/2 {
		return r, fmt.Errorf("ping: %d of %d replies", len(us), sent)
	}
	slices.Sort(us)
	r.Median, r.P99 = Percentile(us, 50), Percentile(us, 99)
	return r, nil
}

// ping sends count echo requests at the given interval from namespace ns
// to dst, bounded by a deadline, and returns the RTT distribution.
func ping(ctx context.Context, ns string, dst netip.Addr, count int, interval time.Duration) (RTT, error) {
	deadline := int(time.Duration(count)*interval/time.Second) + 5
	args := []string{"ping", "-n", "-c", strconv.Itoa(count), "-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64),
		"-w", strconv.Itoa(deadline), dst.String()}
	out, err := runInNS(ctx, time.Duration(deadline+5)*time.Second, ns, args...)
	if err != nil && len(out) == 0 {
		return RTT{}, err
	}
	return parsePing(out, count)
}
