// Package bench measures kindnet the way a user would compare it with the
// alternatives: datapath throughput and latency in the network-namespace
// lab (node to node, pod to pod through kindnet's routes, pod to pod on one
// node, and pod to pod over a VXLAN overlay built in the same lab), the
// agent's boot from its cache and its reaction to one changed peer at
// thousands of peers, and its memory and CPU footprint. It writes a JSON
// record and a Markdown report with PNG charts.
//
// It runs only inside namespaces of labs it creates (test/lab) and removes
// them when it ends, fails or is interrupted; every loop is bounded in
// count and time; processes are stopped by their PID. It never changes the
// machine's own network namespace.
package bench
