package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/moat-dev/moat/internal/metrics"
)

type k8sContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef    *struct{ Name, Key string } `yaml:"secretKeyRef"`
			ConfigMapKeyRef *struct{ Name, Key string } `yaml:"configMapKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	EnvFrom []struct {
		Prefix       string                 `yaml:"prefix"`
		ConfigMapRef *struct{ Name string } `yaml:"configMapRef"`
		SecretRef    *struct{ Name string } `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	StartupProbe   *k8sProbe `yaml:"startupProbe"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string    `yaml:"path"`
		Port yaml.Node `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sDoc struct {
	file       string
	Kind       string                `yaml:"kind"`
	Metadata   struct{ Name string } `yaml:"metadata"`
	Data       map[string]string     `yaml:"data"`
	StringData map[string]string     `yaml:"stringData"`
	Resources  []string              `yaml:"resources"`
	Spec       struct {
		MaxReplicas    int                         `yaml:"maxReplicas"`
		ScaleTargetRef struct{ Kind, Name string } `yaml:"scaleTargetRef"`
		Template       struct {
			Spec struct {
				Containers []k8sContainer `yaml:"containers"`
				Volumes    []struct {
					Name   string `yaml:"name"`
					Secret *struct {
						SecretName string `yaml:"secretName"`
					} `yaml:"secret"`
					ConfigMap *struct{ Name string } `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

func readK8s(t *testing.T) []k8sDoc {
	t.Helper()
	files, err := filepath.Glob("../../deploy/k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/k8s: %v", err)
	}
	var docs []k8sDoc
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(fh)
		for {
			var d k8sDoc
			err := dec.Decode(&d)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if d.Kind == "" {
				continue
			}
			d.file = filepath.Base(f)
			docs = append(docs, d)
		}
		fh.Close()
	}
	return docs
}

// TestK8sManifestsMatchCLI keeps deploy/k8s honest the way
// TestComposeMatchesCLI keeps compose.yaml: every container running the
// moat image names a real command, passes only that command's flags, and
// gets (directly or through envFrom) only MOAT_* variables that map to its
// flags; probes hit paths the role serves; the kustomization lists every
// file; the scorer autoscaler stays within the partition count.
func TestK8sManifestsMatchCLI(t *testing.T) {
	docs := readK8s(t)
	cmds := map[string]Command{}
	for _, c := range Commands() {
		cmds[c.Name] = c
	}
	direct := map[string]bool{"MOAT_API_SECRET": true}
	configMaps, secrets := map[string]map[string]string{}, map[string]map[string]string{}
	kinds := map[string]int{}
	for _, d := range docs {
		kinds[d.Kind]++
		switch d.Kind {
		case "ConfigMap":
			configMaps[d.Metadata.Name] = d.Data
		case "Secret":
			keys := map[string]string{}
			for k, v := range d.Data {
				keys[k] = v
			}
			for k, v := range d.StringData {
				keys[k] = v
			}
			secrets[d.Metadata.Name] = keys
		}
	}

	roles := map[string]bool{}
	for _, d := range docs {
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Secret != nil && secrets[v.Secret.SecretName] == nil {
				t.Errorf("%s %s: volume %s uses unknown Secret %s", d.file, d.Metadata.Name, v.Name, v.Secret.SecretName)
			}
			if v.ConfigMap != nil && configMaps[v.ConfigMap.Name] == nil {
				t.Errorf("%s %s: volume %s uses unknown ConfigMap %s", d.file, d.Metadata.Name, v.Name, v.ConfigMap.Name)
			}
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			where := d.file + " " + d.Kind + "/" + d.Metadata.Name + " " + c.Name
			if c.Image != "moat:latest" {
				continue
			}
			if len(c.Command) > 0 {
				t.Errorf("%s: overrides the image's entrypoint; pass the subcommand in args", where)
			}
			if len(c.Args) == 0 {
				t.Errorf("%s: no args (moat needs a subcommand)", where)
				continue
			}
			cmd, ok := cmds[c.Args[0]]
			if !ok {
				t.Errorf("%s: moat has no command %q", where, c.Args[0])
				continue
			}
			roles[cmd.Name] = true
			fs, _ := cmd.Flags()
			fs.Init(cmd.Name, flag.ContinueOnError)
			fs.SetOutput(new(strings.Builder))
			if err := fs.Parse(c.Args[1:]); err != nil {
				t.Errorf("%s: %v", where, err)
			}
			if fs.NArg() > 0 {
				t.Errorf("%s: stray arguments %q", where, fs.Args())
			}

			// Every variable the container gets, with where it comes from.
			env := map[string]string{}
			for _, ef := range c.EnvFrom {
				var keys map[string]string
				var src string
				switch {
				case ef.ConfigMapRef != nil:
					src = "ConfigMap " + ef.ConfigMapRef.Name
					keys, ok = configMaps[ef.ConfigMapRef.Name]
				case ef.SecretRef != nil:
					src = "Secret " + ef.SecretRef.Name
					keys, ok = secrets[ef.SecretRef.Name]
				default:
					t.Errorf("%s: envFrom without configMapRef or secretRef", where)
					continue
				}
				if !ok {
					t.Errorf("%s: envFrom names unknown %s", where, src)
					continue
				}
				for k := range keys {
					env[ef.Prefix+k] = src
				}
			}
			for _, e := range c.Env {
				env[e.Name] = "env"
				if vf := e.ValueFrom; vf != nil {
					if r := vf.SecretKeyRef; r != nil {
						if _, ok := secrets[r.Name][r.Key]; !ok {
							t.Errorf("%s: %s refers to missing Secret key %s/%s", where, e.Name, r.Name, r.Key)
						}
					}
					if r := vf.ConfigMapKeyRef; r != nil {
						if _, ok := configMaps[r.Name][r.Key]; !ok {
							t.Errorf("%s: %s refers to missing ConfigMap key %s/%s", where, e.Name, r.Name, r.Key)
						}
					}
				}
			}
			for k, src := range env {
				if !strings.HasPrefix(k, "MOAT_") || direct[k] {
					continue
				}
				name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, "MOAT_"), "_", "-"))
				if fs.Lookup(name) == nil {
					t.Errorf("%s: %s (from %s) sets no flag of moat %s", where, k, src, cmd.Name)
				}
			}

			// Probes: HTTP roles serve /healthz and /readyz on --http-addr;
			// workers serve /healthz (and /metrics) on --metrics-addr.
			listen := ""
			paths := map[string]bool{"/healthz": true}
			if f := fs.Lookup("http-addr"); f != nil {
				listen = f.Value.String()
				paths["/readyz"] = true
			} else if f := fs.Lookup("metrics-addr"); f != nil {
				listen = f.Value.String()
			}
			ports := map[string]int{}
			for _, p := range c.Ports {
				ports[p.Name] = p.ContainerPort
			}
			for kind, p := range map[string]*k8sProbe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
				if p == nil {
					if cmd.Name != "migrate" && kind != "startup" {
						t.Errorf("%s: no %s probe", where, kind)
					}
					continue
				}
				if p.HTTPGet == nil {
					t.Errorf("%s: %s probe is not httpGet", where, kind)
					continue
				}
				if !paths[p.HTTPGet.Path] {
					t.Errorf("%s: %s probe on %s, which moat %s does not serve", where, kind, p.HTTPGet.Path, cmd.Name)
				}
				port, err := strconv.Atoi(p.HTTPGet.Port.Value)
				if err != nil {
					var ok bool
					if port, ok = ports[p.HTTPGet.Port.Value]; !ok {
						t.Errorf("%s: %s probe on unknown port %q", where, kind, p.HTTPGet.Port.Value)
						continue
					}
				}
				if !strings.HasPrefix(listen, "0.0.0.0:") || listen != "0.0.0.0:"+strconv.Itoa(port) {
					t.Errorf("%s: %s probe on port %d but moat %s listens on %q", where, kind, port, cmd.Name, listen)
				}
			}
		}
	}
	for _, r := range []string{"ingest", "api", "scorer", "projector", "webhooker", "migrate"} {
		if !roles[r] {
			t.Errorf("deploy/k8s runs no moat %s", r)
		}
	}
	for kind, n := range map[string]int{"Namespace": 1, "PodDisruptionBudget": 5, "HorizontalPodAutoscaler": 2, "StatefulSet": 1, "Job": 1} {
		if kinds[kind] < n {
			t.Errorf("deploy/k8s has %d %s, want at least %d", kinds[kind], kind, n)
		}
	}

	// The scorer autoscaler cannot usefully exceed the partition count.
	partitions := 0
	for _, cm := range configMaps {
		if v, ok := cm["MOAT_KAFKA_PARTITIONS"]; ok {
			partitions, _ = strconv.Atoi(v)
		}
	}
	for _, d := range docs {
		if d.Kind == "HorizontalPodAutoscaler" && d.Spec.ScaleTargetRef.Name == "moat-scorer" {
			if partitions == 0 || d.Spec.MaxReplicas > partitions {
				t.Errorf("scorer HPA maxReplicas %d exceeds MOAT_KAFKA_PARTITIONS %d", d.Spec.MaxReplicas, partitions)
			}
		}
	}

	// kustomization.yaml lists exactly the manifests in the directory.
	var listed []string
	for _, d := range docs {
		if d.Kind == "Kustomization" {
			listed = append(listed, d.Resources...)
		}
	}
	files, _ := filepath.Glob("../../deploy/k8s/*.yaml")
	var have []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" {
			have = append(have, b)
		}
	}
	sort.Strings(listed)
	if strings.Join(listed, ",") != strings.Join(have, ",") {
		t.Errorf("kustomization.yaml resources %v, files %v", listed, have)
	}
}

// registeredFamilies records one observation of every kind and returns the
// families (with their label names) that a moat process exports.
func registeredFamilies(t *testing.T) map[string]map[string]bool {
	t.Helper()
	m := metrics.New()
	e := echo.New()
	e.Use(m.Middleware())
	e.GET("/v1/track", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
	e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1/track", nil))
	m.Produced("track", time.Millisecond, nil)
	m.Produced("track", time.Millisecond, errors.New("x"))
	m.Decided("$login", "allow", []string{"new_device"})
	m.Transaction(time.Millisecond, nil)
	m.Transaction(time.Millisecond, errors.New("x"))
	m.Restored(time.Millisecond)
	m.DeadLettered()
	m.Inserted(1, time.Millisecond, []int64{time.Now().UnixMilli()})
	m.InsertFailed()
	m.ConsumerLag("moat-scorer", metrics.ReadCommitted()).Set("moat.events.v1", 0, 1)
	m.WatchWebhooks(func() metrics.WebhookStats { return metrics.WebhookStats{Delivered: 1} })
	g, ok := m.Registerer().(prometheus.Gatherer)
	if !ok {
		t.Fatal("metrics registry is not a Gatherer")
	}
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]bool{}
	for _, mf := range mfs {
		labels := map[string]bool{}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		out[mf.GetName()] = labels
	}
	return out
}

// TestGrafanaDashboardUsesRealMetrics checks that every metric and every
// grouping label the dashboard queries is exported by metrics.New.
func TestGrafanaDashboardUsesRealMetrics(t *testing.T) {
	b, err := os.ReadFile("../../deploy/grafana/moat.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	if v, _ := dash["schemaVersion"].(float64); v < 36 {
		t.Errorf("schemaVersion %v, want a current one (~39)", dash["schemaVersion"])
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if e, ok := v["expr"].(string); ok {
				exprs = append(exprs, e)
			}
			if ds, ok := v["datasource"].(map[string]any); ok && ds["type"] == "prometheus" && ds["uid"] != "${DS_PROMETHEUS}" {
				t.Errorf("datasource %v, want uid ${DS_PROMETHEUS}", ds)
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(dash)
	if len(exprs) < 20 {
		t.Fatalf("dashboard has %d queries", len(exprs))
	}
	fams := registeredFamilies(t)
	nameRe := regexp.MustCompile(`\b(?:moat|go|process)_[a-z_]+`)
	groupRe := regexp.MustCompile(`\b(?:by|on|without|ignoring)\s*\(([^)]*)\)`)
	suffix := regexp.MustCompile(`_(?:bucket|count|sum)$`)
	used := map[string]bool{}
	for _, e := range exprs {
		labels := map[string]bool{"le": true, "instance": true, "job": true}
		for _, n := range nameRe.FindAllString(e, -1) {
			fam, ok := fams[n]
			if !ok {
				fam, ok = fams[suffix.ReplaceAllString(n, "")]
			}
			if !ok {
				t.Errorf("%s: metric %s is not registered by metrics.New", e, n)
				continue
			}
			used[suffix.ReplaceAllString(n, "")] = true
			for l := range fam {
				labels[l] = true
			}
		}
		for _, g := range groupRe.FindAllStringSubmatch(e, -1) {
			for _, l := range strings.Split(g[1], ",") {
				if l = strings.TrimSpace(l); l != "" && !labels[l] {
					t.Errorf("%s: label %q is on none of its metrics", e, l)
				}
			}
		}
	}
	// Every moat family is on the dashboard.
	for n := range fams {
		if strings.HasPrefix(n, "moat_") && !used[n] {
			t.Errorf("metric %s is on no dashboard panel", n)
		}
	}
}
