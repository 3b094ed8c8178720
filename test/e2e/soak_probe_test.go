package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/kindnet-dev/kindnet/test/lab"
)

// prober checks that every live pod reaches every other live pod over
// IPv4 and IPv6, continuously, without starting a process per ping: each
// pod gets one raw ICMP socket per family, opened inside its namespace (a
// socket keeps the namespace it was created in), and a round sends one
// echo request from every pod to every other pod's address. A pair counts
// as failed only if three requests a second apart all go unanswered while
// both pods were live for the whole time.
type prober struct {
	id   uint16 // ICMP echo identifier of this soak
	next atomic.Uint64

	mu      sync.Mutex
	members map[*soakPod]*probeSockets
	pending map[uint64]*probe // token → outstanding probe

	// Counters, read at the end.
	rounds, sent, answered, sendErrors atomic.Int64
	pairsChecked, unanswered, excused  atomic.Int64
	maxPods                            atomic.Int64
}

type probeSockets struct {
	v4, v6 net.PacketConn
}

type probe struct {
	from, to *soakPod
	family   int // 4 or 6
	done     atomic.Bool
}

// probeMagic starts the payload of every echo request of the soak.
const probeMagic = 0x6b6e736b // "knsk"

func newProber() *prober {
	return &prober{id: uint16(rand.N(1 << 16)), members: map[*soakPod]*probeSockets{}, pending: map[uint64]*probe{}}
}

// add opens the pod's sockets and starts reading replies.
func (pr *prober) add(p *soakPod) error {
	s := &probeSockets{}
	err := lab.InNetNS(p.NS, func() error {
		var err error
		if s.v4, err = net.ListenPacket("ip4:icmp", "0.0.0.0"); err != nil {
			return err
		}
		s.v6, err = net.ListenPacket("ip6:ipv6-icmp", "::")
		return err
	})
	if err != nil {
		s.close()
		return fmt.Errorf("open ICMP sockets in %s: %w", p.NS, err)
	}
	go pr.read(s.v4, 1)
	go pr.read(s.v6, 58)
	pr.mu.Lock()
	pr.members[p] = s
	pr.mu.Unlock()
	return nil
}

// remove closes the pod's sockets (before its DEL: a socket would keep
// the deleted namespace alive).
func (pr *prober) remove(p *soakPod) {
	pr.mu.Lock()
	s := pr.members[p]
	delete(pr.members, p)
	pr.mu.Unlock()
	if s != nil {
		s.close()
	}
}

func (s *probeSockets) close() {
	for _, c := range []net.PacketConn{s.v4, s.v6} {
		if c != nil {
			c.Close()
		}
	}
}

// read marks the probes whose echo replies arrive on c until c is closed.
func (pr *prober) read(c net.PacketConn, proto int) {
	buf := make([]byte, 1500)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || (m.Type != ipv4.ICMPTypeEchoReply && m.Type != ipv6.ICMPTypeEchoReply) {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		if !ok || echo.ID != int(pr.id) || len(echo.Data) < 12 || binary.BigEndian.Uint32(echo.Data) != probeMagic {
			continue
		}
		token := binary.BigEndian.Uint64(echo.Data[4:])
		pr.mu.Lock()
		p := pr.pending[token]
		delete(pr.pending, token)
		pr.mu.Unlock()
		if p != nil && p.done.CompareAndSwap(false, true) {
			pr.answered.Add(1)
		}
	}
}

// send sends one echo request for p and registers it as pending.
func (pr *prober) send(p *probe) {
	token := pr.next.Add(1)
	pr.mu.Lock()
	s := pr.members[p.from]
	if s != nil {
		pr.pending[token] = p
	}
	pr.mu.Unlock()
	if s == nil {
		return // the sender is being removed
	}
	data := make([]byte, 16)
	binary.BigEndian.PutUint32(data, probeMagic)
	binary.BigEndian.PutUint64(data[4:], token)
	m := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: int(pr.id), Seq: int(token & 0xffff), Data: data}}
	c, dst := s.v4, p.to.IPv4
	if p.family == 6 {
		m.Type, c, dst = ipv6.ICMPTypeEchoRequest, s.v6, p.to.IPv6
	}
	b, err := m.Marshal(nil) // ICMPv6: the kernel fills in the checksum
	if err == nil {
		_, err = c.WriteTo(b, &net.IPAddr{IP: net.IP(dst.AsSlice())})
	}
	pr.sent.Add(1)
	if err != nil {
		pr.sendErrors.Add(1)
	}
}

// probeFailure is a pair that did not answer.
type probeFailure struct {
	from, to *soakPod
	family   int
}

func (f probeFailure) String() string {
	to := f.to.IPv4
	if f.family == 6 {
		to = f.to.IPv6
	}
	return fmt.Sprintf("%s/%s -> %s/%s (%s) over IPv%d", f.from.Node, f.from.Name, f.to.Node, f.to.Name, to, f.family)
}

// round probes every ordered pair of the pods live now, both families, and
// returns the pairs that failed while both pods stayed live. A round cut
// short by the end of ctx counts nothing.
func (pr *prober) round(ctx context.Context, reg *podRegistry) []probeFailure {
	pr.mu.Lock()
	var pods []*soakPod
	for p := range pr.members {
		pods = append(pods, p)
	}
	pr.mu.Unlock()
	if int64(len(pods)) > pr.maxPods.Load() {
		pr.maxPods.Store(int64(len(pods)))
	}
	var probes []*probe
	for _, a := range pods {
		for _, b := range pods {
			if a == b {
				continue
			}
			for _, fam := range []int{4, 6} {
				if (fam == 4 && a.IPv4.IsValid() && b.IPv4.IsValid()) || (fam == 6 && a.IPv6.IsValid() && b.IPv6.IsValid()) {
					probes = append(probes, &probe{from: a, to: b, family: fam})
				}
			}
		}
	}
	waiting := probes
	for attempt := 0; attempt < 3 && len(waiting) > 0; attempt++ {
		for _, p := range waiting {
			pr.send(p)
		}
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			if allDone(waiting) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		var still []*probe
		for _, p := range waiting {
			if !p.done.Load() {
				still = append(still, p)
			}
		}
		waiting = still
	}
	pr.forget(probes)
	if ctx.Err() != nil {
		// The soak ended during this round and cut its waits short: its
		// unanswered pairs prove nothing. finish() probes the whole
		// matrix again with nothing in flight.
		return nil
	}
	pr.rounds.Add(1)
	pr.pairsChecked.Add(int64(len(probes)))
	var failed []probeFailure
	pr.unanswered.Add(int64(len(waiting)))
	for _, p := range waiting {
		// Only a pair whose pods were live throughout counts: one of them
		// may have entered its DEL while we waited.
		if reg.stillLive(p.from) && reg.stillLive(p.to) {
			failed = append(failed, probeFailure{p.from, p.to, p.family})
		} else {
			pr.excused.Add(1)
		}
	}
	return failed
}

func allDone(ps []*probe) bool {
	for _, p := range ps {
		if !p.done.Load() {
			return false
		}
	}
	return true
}

// forget drops the tokens of a finished round that were never answered.
func (pr *prober) forget(ps []*probe) {
	mine := make(map[*probe]bool, len(ps))
	for _, p := range ps {
		mine[p] = true
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	for t, p := range pr.pending {
		if mine[p] {
			delete(pr.pending, t)
		}
	}
}

// closeAll closes every socket (end of the soak).
func (pr *prober) closeAll() {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	for p, s := range pr.members {
		s.close()
		delete(pr.members, p)
	}
}
