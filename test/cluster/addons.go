package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kindnet-dev/kindnet/internal/kubetest"
)

// Client is a cluster-admin client for this process: its connections are
// opened inside the control-plane namespace, where the API server is.
func (c *Cluster) Client() (*kubernetes.Clientset, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig())
	if err != nil {
		return nil, err
	}
	cfg.Dial = kubetest.DialInNetNS("/run/netns/" + c.CP.NS)
	cfg.Timeout = 30 * time.Second
	return kubernetes.NewForConfig(cfg)
}

// NodeReady says whether a Node's Ready condition is True, and why not.
func NodeReady(n *corev1.Node) (bool, string) {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue, cond.Reason + ": " + cond.Message
		}
	}
	return false, "no Ready condition yet"
}

func (u *upper) waitNodesReady(ctx context.Context, timeout time.Duration) error {
	cs, err := u.c.Client()
	if err != nil {
		return err
	}
	all := u.c.AllNodes()
	return waitUntil(ctx, timeout, fmt.Sprintf("%d nodes Ready", len(all)), func() (bool, error) {
		if err := u.nodeProcessesAlive(); err != nil {
			return false, err
		}
		list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		var notReady []string
		for _, n := range all {
			why := "not registered"
			for i := range list.Items {
				if list.Items[i].Name == n.Name {
					var ok bool
					if ok, why = NodeReady(&list.Items[i]); ok {
						why = ""
					}
				}
			}
			if why != "" {
				notReady = append(notReady, n.Name+": "+why)
			}
		}
		if len(notReady) > 0 {
			return false, fmt.Errorf("%s", strings.Join(notReady, "; "))
		}
		return true, nil
	})
}

// labelControlPlane gives the control-plane node kubeadm's role label
// (kubelet may not set node-role labels on itself: NodeRestriction).
func (u *upper) labelControlPlane(ctx context.Context) error {
	n := u.c.ControlPlaneNode
	if n == nil {
		return nil
	}
	_, err := u.c.Kubectl(ctx, u.o.Bins, nil, "label", "node", n.Name, ControlPlaneTaint+"=", "--overwrite")
	return err
}

// nodeProcessesAlive fails the wait at once when a node's program died.
func (u *upper) nodeProcessesAlive() error {
	for _, p := range u.c.Procs {
		if kubetest.StartTime(p.PID) != p.Start {
			return fmt.Errorf("%w: %s %s exited:\n%s", errGaveUp, p.Node, p.Name, kubetest.TailFile(p.Log, 30))
		}
	}
	return nil
}

// coreDNS applies kubeadm's CoreDNS add-on (its RBAC, Corefile,
// Deployment and the kube-dns Service at DNSIP) and waits until its pods
// are Ready.
func (u *upper) coreDNS(ctx context.Context) error {
	if _, err := u.c.Kubectl(ctx, u.o.Bins, []byte(coreDNSManifests()), "apply", "-f", "-"); err != nil {
		return err
	}
	cs, err := u.c.Client()
	if err != nil {
		return err
	}
	return waitUntil(ctx, 3*time.Minute, "CoreDNS Ready", func() (bool, error) {
		if err := u.nodeProcessesAlive(); err != nil {
			return false, err
		}
		d, err := cs.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if d.Spec.Replicas == nil || d.Status.ReadyReplicas < *d.Spec.Replicas {
			return false, fmt.Errorf("%d of %d replicas ready", d.Status.ReadyReplicas, *d.Spec.Replicas)
		}
		return true, nil
	})
}

// coreDNSManifests are kubeadm 1.37's CoreDNS add-on manifests
// (cmd/kubeadm/app/phases/addons/dns/manifests.go), filled in as kubeadm
// fills them for this cluster: domain cluster.local, 2 replicas, the
// control-plane taint key.
func coreDNSManifests() string {
	return `apiVersion: v1
kind: ServiceAccount
metadata:
  name: coredns
  namespace: kube-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:coredns
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:coredns
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:coredns
subjects:
- kind: ServiceAccount
  name: coredns
  namespace: kube-system
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: coredns
  namespace: kube-system
data:
  Corefile: |
    .:53 {
        errors
        health {
           lameduck 5s
        }
        ready
        kubernetes cluster.local in-addr.arpa ip6.arpa {
           pods insecure
           fallthrough in-addr.arpa ip6.arpa
           ttl 30
        }
        prometheus :9153
        forward . /etc/resolv.conf {
           max_concurrent 1000
        }
        cache 30 {
           disable success cluster.local
           disable denial cluster.local
        }
        loop
        reload
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels:
    k8s-app: kube-dns
spec:
  replicas: 2
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 1
  selector:
    matchLabels:
      k8s-app: kube-dns
  template:
    metadata:
      labels:
        k8s-app: kube-dns
    spec:
      priorityClassName: system-cluster-critical
      serviceAccountName: coredns
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm:
              labelSelector:
                matchExpressions:
                - key: k8s-app
                  operator: In
                  values: ["kube-dns"]
              topologyKey: kubernetes.io/hostname
      tolerations:
      - key: CriticalAddonsOnly
        operator: Exists
      - key: node-role.kubernetes.io/control-plane
        effect: NoSchedule
      nodeSelector:
        kubernetes.io/os: linux
      containers:
      - name: coredns
        image: ` + CoreDNSImage + `
        imagePullPolicy: IfNotPresent
        resources:
          limits:
            memory: 170Mi
          requests:
            cpu: 100m
            memory: 70Mi
        args: [ "-conf", "/etc/coredns/Corefile" ]
        volumeMounts:
        - name: config-volume
          mountPath: /etc/coredns
          readOnly: true
        ports:
        - containerPort: 53
          name: dns
          protocol: UDP
        - containerPort: 53
          name: dns-tcp
          protocol: TCP
        - containerPort: 9153
          name: metrics
          protocol: TCP
        - containerPort: 8080
          name: liveness-probe
          protocol: TCP
        - containerPort: 8181
          name: readiness-probe
          protocol: TCP
        livenessProbe:
          httpGet:
            path: /health
            port: liveness-probe
            scheme: HTTP
          initialDelaySeconds: 60
          timeoutSeconds: 5
          successThreshold: 1
          failureThreshold: 5
        readinessProbe:
          httpGet:
            path: /ready
            port: readiness-probe
            scheme: HTTP
        securityContext:
          allowPrivilegeEscalation: false
          capabilities:
            add:
            - NET_BIND_SERVICE
            drop:
            - ALL
          readOnlyRootFilesystem: true
      dnsPolicy: Default
      volumes:
        - name: config-volume
          configMap:
            name: coredns
            items:
            - key: Corefile
              path: Corefile
---
apiVersion: v1
kind: Service
metadata:
  labels:
    k8s-app: kube-dns
    kubernetes.io/cluster-service: "true"
    kubernetes.io/name: "CoreDNS"
  name: kube-dns
  namespace: kube-system
  annotations:
    prometheus.io/port: "9153"
    prometheus.io/scrape: "true"
spec:
  clusterIP: ` + DNSIP.String() + `
  ports:
  - name: dns
    port: 53
    protocol: UDP
    targetPort: 53
  - name: dns-tcp
    port: 53
    protocol: TCP
    targetPort: 53
  - name: metrics
    port: 9153
    protocol: TCP
    targetPort: 9153
  selector:
    k8s-app: kube-dns
`
}
