package deploy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomize's Kustomization these manifests
// use; strict decoding fails on anything else.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images,omitempty"`
}

// manifests is every object a kustomization renders.
type manifests struct {
	configMaps  []*corev1.ConfigMap
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	pdbs        []*policyv1.PodDisruptionBudget
	monitors    []*monitoringv1.ServiceMonitor
}

// render builds the kustomization in dir as `kubectl apply -k` would
// (kustomize's own library) and decodes every object it yields strictly
// into its API type.
func render(t *testing.T, dir string) *manifests {
	t.Helper()
	checkKustomization(t, dir)
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resources, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	m := &manifests{}
	for _, r := range resources.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		what := fmt.Sprintf("%s: %s %s", dir, r.GetKind(), r.GetName())
		switch r.GetApiVersion() + " " + r.GetKind() {
		case "v1 ConfigMap":
			m.configMaps = append(m.configMaps, decodeAs[corev1.ConfigMap](t, what, y))
		case "apps/v1 Deployment":
			m.deployments = append(m.deployments, decodeAs[appsv1.Deployment](t, what, y))
		case "v1 Service":
			m.services = append(m.services, decodeAs[corev1.Service](t, what, y))
		case "policy/v1 PodDisruptionBudget":
			m.pdbs = append(m.pdbs, decodeAs[policyv1.PodDisruptionBudget](t, what, y))
		case "monitoring.coreos.com/v1 ServiceMonitor":
			m.monitors = append(m.monitors, decodeAs[monitoringv1.ServiceMonitor](t, what, y))
		default:
			t.Fatalf("%s (%s) is not a kind this test knows: add it to the test", what, r.GetApiVersion())
		}
	}
	return m
}

// checkKustomization reads dir/kustomization.yaml strictly (only the
// fields these manifests use) and checks that every manifest beside it is
// one of its resources, so that none is forgotten.
func checkKustomization(t *testing.T, dir string) {
	t.Helper()
	var k kustomization
	if err := yaml.UnmarshalStrict(readFile(t, filepath.Join(dir, "kustomization.yaml")), &k); err != nil {
		t.Fatalf("%s/kustomization.yaml: %v", dir, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Fatalf("%s/kustomization.yaml: %s %s, want kustomize.config.k8s.io/v1beta1 Kustomization", dir, k.APIVersion, k.Kind)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml")) // constant pattern
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !slices.Contains(k.Resources, b) {
			t.Fatalf("%s is not in %s/kustomization.yaml", f, dir)
		}
	}
}

// decodeAs decodes one object strictly: unknown fields (a misspelt or
// misplaced key) and duplicate keys fail.
func decodeAs[T any](t *testing.T, what string, y []byte) *T {
	t.Helper()
	v := new(T)
	if err := yaml.UnmarshalStrict(y, v); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// TestKubernetesManifests checks deploy/kubernetes: the base and the
// Prometheus overlay.
func TestKubernetesManifests(t *testing.T) {
	for _, dir := range []string{"kubernetes/base", "kubernetes/prometheus"} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			m := render(t, dir)
			checkObjects(t, m)
			checkFossil(t, m)
			if dir == "kubernetes/prometheus" && len(m.monitors) != 1 {
				t.Fatalf("the prometheus overlay has %d ServiceMonitors, want 1", len(m.monitors))
			}
		})
	}
}

// checkObjects applies the API server's rules that the types do not carry:
// names, labels, selectors, ports, references between objects.
func checkObjects(t *testing.T, m *manifests) {
	t.Helper()
	if len(m.deployments) != 1 || len(m.services) != 1 || len(m.pdbs) != 1 || len(m.configMaps) != 1 {
		t.Fatalf("want one Deployment, Service, PodDisruptionBudget and ConfigMap, got %d, %d, %d, %d",
			len(m.deployments), len(m.services), len(m.pdbs), len(m.configMaps))
	}
	d, svc, pdb, cm := m.deployments[0], m.services[0], m.pdbs[0], m.configMaps[0]
	for _, om := range []metav1.ObjectMeta{d.ObjectMeta, svc.ObjectMeta, pdb.ObjectMeta, cm.ObjectMeta} {
		must(t, om.Name, validation.IsDNS1123Subdomain(om.Name))
		checkLabels(t, om.Name, om.Labels)
		if om.Namespace != "" {
			t.Errorf("%s sets a namespace: leave it to kubectl -n or a kustomization", om.Name)
		}
	}
	for k := range cm.Data {
		must(t, "ConfigMap key "+k, validation.IsConfigMapKey(k))
		must(t, "ConfigMap key "+k, validation.IsEnvVarName(k))
	}

	// The Deployment selects its own pods, and so do the Service and the PDB.
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() {
		t.Fatalf("Deployment selector: %v (empty: %v)", err, sel.Empty())
	}
	podLabels := labels.Set(d.Spec.Template.Labels)
	checkLabels(t, "pod template", d.Spec.Template.Labels)
	if !sel.Matches(podLabels) {
		t.Fatalf("the Deployment's selector %s does not select its pods %v", sel, podLabels)
	}
	if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Fatalf("the Service's selector %v does not select the pods %v", svc.Spec.Selector, podLabels)
	}
	psel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || psel.Empty() || !psel.Matches(podLabels) {
		t.Fatalf("the PodDisruptionBudget's selector %v does not select the pods %v (%v)", pdb.Spec.Selector, podLabels, err)
	}
	if (pdb.Spec.MaxUnavailable == nil) == (pdb.Spec.MinAvailable == nil) {
		t.Fatal("the PodDisruptionBudget needs exactly one of maxUnavailable and minAvailable")
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Fatal("the Deployment needs at least 2 replicas for its PodDisruptionBudget to allow a drain")
	}
	if pdb.Spec.MaxUnavailable != nil && pdb.Spec.MaxUnavailable.IntValue() >= int(*d.Spec.Replicas) {
		t.Fatalf("maxUnavailable %s leaves no pod up", pdb.Spec.MaxUnavailable)
	}

	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	must(t, "container name", validation.IsDNS1123Label(c.Name))
	if !strings.Contains(c.Image, "/") || !strings.Contains(c.Image, ":") {
		t.Fatalf("the rendered image is %q: the kustomization's images must give a registry and a tag", c.Image)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		must(t, "port "+p.Name, validation.IsValidPortName(p.Name))
		must(t, "port "+p.Name, validation.IsValidPortNum(int(p.ContainerPort)))
		ports[p.Name] = p.ContainerPort
	}
	for _, sp := range svc.Spec.Ports {
		must(t, "service port "+sp.Name, validation.IsValidPortName(sp.Name))
		if sp.TargetPort.String() != "" && sp.TargetPort.IntValue() == 0 && ports[sp.TargetPort.String()] == 0 {
			t.Fatalf("the Service's targetPort %s is no container port", sp.TargetPort.String())
		}
	}
	for _, p := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
		if p != nil && p.HTTPGet != nil && ports[p.HTTPGet.Port.String()] == 0 && p.HTTPGet.Port.IntValue() == 0 {
			t.Fatalf("a probe's port %s is no container port", p.HTTPGet.Port.String())
		}
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		must(t, "volume "+v.Name, validation.IsDNS1123Label(v.Name))
		volumes[v.Name] = v
	}
	for _, vm := range c.VolumeMounts {
		if _, ok := volumes[vm.Name]; !ok {
			t.Fatalf("volume mount %s names no volume", vm.Name)
		}
		if !filepath.IsAbs(vm.MountPath) {
			t.Fatalf("mount path %s is not absolute", vm.MountPath)
		}
	}
	for _, e := range c.Env {
		must(t, "env "+e.Name, validation.IsEnvVarName(e.Name))
		if (e.Value != "") == (e.ValueFrom != nil) && e.ValueFrom != nil {
			t.Fatalf("env %s has both value and valueFrom", e.Name)
		}
	}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil && ef.ConfigMapRef.Name != cm.Name {
			t.Fatalf("envFrom names ConfigMap %s, the manifests define %s", ef.ConfigMapRef.Name, cm.Name)
		}
	}

	for _, sm := range m.monitors {
		must(t, sm.Name, validation.IsDNS1123Subdomain(sm.Name))
		msel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil || msel.Empty() || !msel.Matches(labels.Set(svc.Labels)) {
			t.Fatalf("the ServiceMonitor's selector %v does not select the Service's labels %v (%v)", sm.Spec.Selector, svc.Labels, err)
		}
		if len(sm.Spec.Endpoints) == 0 {
			t.Fatal("the ServiceMonitor has no endpoint")
		}
		for _, ep := range sm.Spec.Endpoints {
			if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
				t.Fatalf("the ServiceMonitor scrapes port %q, which the Service does not name", ep.Port)
			}
			if ep.Path != "/metrics" {
				t.Fatalf("the ServiceMonitor scrapes %q, want /metrics", ep.Path)
			}
		}
	}
}

func checkLabels(t *testing.T, what string, l map[string]string) {
	t.Helper()
	for k, v := range l {
		must(t, what+" label "+k, validation.IsQualifiedName(k))
		must(t, what+" label "+k, validation.IsValidLabelValue(v))
	}
}

func must(t *testing.T, what string, errs []string) {
	t.Helper()
	if len(errs) > 0 {
		t.Fatalf("%s: %s", what, strings.Join(errs, "; "))
	}
}

// checkFossil checks what Fossil needs: the probes on /healthz and
// /readyz, a grace period longer than the drain, only variables the
// server reads, and secrets the README beside the manifests documents.
func checkFossil(t *testing.T, m *manifests) {
	t.Helper()
	d, cm := m.deployments[0], m.configMaps[0]
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]

	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Fatal("the liveness probe must GET /healthz (the process is up; it never needs a token)")
	}
	if c.StartupProbe == nil || c.StartupProbe.HTTPGet == nil || c.StartupProbe.HTTPGet.Path != "/healthz" {
		t.Fatal("the startup probe must GET /healthz, so that a long migration does not trip the liveness probe")
	}
	if got := probeBudget(c.StartupProbe); got < 2*time.Minute {
		t.Fatalf("the startup probe gives up after %s: a migration on a large log takes longer", got)
	}
	rp := c.ReadinessProbe
	if rp == nil || rp.Exec == nil || !slices.Equal(rp.Exec.Command, []string{"/fossil", "healthcheck", "--ready"}) {
		t.Fatal(`the readiness probe must run ["/fossil", "healthcheck", "--ready"] (GET /readyz with $FOSSIL_TOKEN)`)
	}
	if rp.TimeoutSeconds <= 3 {
		t.Fatalf("the readiness probe's timeout (%ds) must exceed fossil healthcheck's own (3s)", rp.TimeoutSeconds)
	}

	// The grace period covers the preStop sleep and the server's drain.
	shutdown := DefaultShutdownTimeout
	if v, ok := cm.Data["FOSSIL_SHUTDOWN_TIMEOUT"]; ok {
		var err error
		if shutdown, err = time.ParseDuration(v); err != nil {
			t.Fatalf("FOSSIL_SHUTDOWN_TIMEOUT %q: %v", v, err)
		}
	}
	var preStop time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		if c.Lifecycle.PreStop.Sleep == nil {
			t.Fatal("preStop must be a sleep action: the image has no shell")
		}
		preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	if pod.TerminationGracePeriodSeconds == nil {
		t.Fatal("set terminationGracePeriodSeconds")
	}
	grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	if grace < preStop+shutdown+5*time.Second {
		t.Fatalf("terminationGracePeriodSeconds %s is shorter than the preStop sleep %s + FOSSIL_SHUTDOWN_TIMEOUT %s + 5s for the appender and subscriptions to finish",
			grace, preStop, shutdown)
	}
	if d.Spec.Strategy.RollingUpdate == nil || d.Spec.Strategy.RollingUpdate.MaxUnavailable == nil || d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		t.Fatal("a rolling update must keep every pod until its replacement is ready (maxUnavailable: 0)")
	}

	// Every variable is one the server (or fossil healthcheck) reads.
	known := knownVariables(t)
	checkVar := func(name, where string) {
		t.Helper()
		base := strings.TrimSuffix(name, "_FILE")
		switch {
		case known[name], strings.HasSuffix(name, "_FILE") && known[base] && secretVars[base]:
		default:
			t.Fatalf("%s sets %s, which the server does not read (cmd/config.go, cmd/healthcheck.go)", where, name)
		}
	}
	for k := range cm.Data {
		checkVar(k, "the ConfigMap")
	}
	// A variable that only feeds another's value ($(POD_IP)) is the
	// manifest's own.
	helpers := map[string]bool{}
	for _, e := range c.Env {
		for _, m := range dependentVar.FindAllStringSubmatch(e.Value, -1) {
			helpers[m[1]] = true
		}
	}
	for _, e := range c.Env {
		if helpers[e.Name] {
			if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil {
				t.Fatalf("%s feeds another variable: it must come from the downward API", e.Name)
			}
			continue
		}
		checkVar(e.Name, "the Deployment")
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "FOSSIL_ADVERTISE_URL" && strings.Contains(e.Value, "$(POD_IP)") &&
			slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool {
				return strings.HasSuffix(e.Value, fmt.Sprintf(":%d", p.ContainerPort)) && cm.Data["FOSSIL_ADDR"] == fmt.Sprintf(":%d", p.ContainerPort)
			})
	}) {
		t.Fatal("FOSSIL_ADVERTISE_URL must be http://$(POD_IP):PORT with the container's port and FOSSIL_ADDR's, so that the other pods can forward pull-subscription traffic to it")
	}

	// Every secret and key the manifests use is documented beside them.
	doc := string(readFile(t, "kubernetes/README.md"))
	refs := map[string]bool{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			refs[e.ValueFrom.SecretKeyRef.Name+" "+e.ValueFrom.SecretKeyRef.Key] = true
		}
	}
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			if len(v.Secret.Items) == 0 {
				t.Fatalf("volume %s: list the Secret's keys (items), so the README can name them", v.Name)
			}
			for _, it := range v.Secret.Items {
				refs[v.Secret.SecretName+" "+it.Key] = true
			}
		}
	}
	for _, sm := range m.monitors {
		for _, ep := range sm.Spec.Endpoints {
			if ep.Authorization != nil && ep.Authorization.Credentials != nil {
				refs[ep.Authorization.Credentials.Name+" "+ep.Authorization.Credentials.Key] = true
			}
		}
	}
	for ref := range refs {
		name, key, _ := strings.Cut(ref, " ")
		must(t, "secret key "+key, validation.IsConfigMapKey(key))
		if !strings.Contains(doc, "`"+name+"`") || !strings.Contains(doc, "`"+key+"`") {
			t.Errorf("deploy/kubernetes/README.md does not document the Secret `%s` with its key `%s`", name, key)
		}
	}
	// Secret file paths point into a mounted secret.
	for _, e := range c.Env {
		if strings.HasSuffix(e.Name, "_FILE") {
			if !slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool {
				return strings.HasPrefix(e.Value, vm.MountPath+"/")
			}) {
				t.Fatalf("%s=%s is in no mounted volume", e.Name, e.Value)
			}
		}
	}
}

// DefaultShutdownTimeout is FOSSIL_SHUTDOWN_TIMEOUT's default (cmd).
const DefaultShutdownTimeout = 10 * time.Second

// secretVars are the settings that accept a _FILE variant (cmd/config.go's
// secret()).
var secretVars = map[string]bool{}

// dependentVar is Kubernetes' $(NAME) reference to an earlier variable.
var dependentVar = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

var quoted = regexp.MustCompile(`"([A-Z][A-Z0-9_]*[A-Z0-9])"`)

// knownVariables returns the environment variables cmd/config.go and
// cmd/healthcheck.go read, and notes which are secrets.
func knownVariables(t *testing.T) map[string]bool {
	t.Helper()
	known := map[string]bool{}
	for _, f := range []string{"../cmd/config.go", "../cmd/healthcheck.go"} {
		src := string(readFile(t, f))
		for _, m := range quoted.FindAllStringSubmatch(src, -1) {
			known[m[1]] = true
		}
		// secret(&c.X, "flag", []string{"A", "B"}, …)
		for _, line := range strings.Split(src, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "secret(&") {
				for _, m := range quoted.FindAllStringSubmatch(line, -1) {
					secretVars[m[1]] = true
				}
			}
		}
	}
	if !known["DATABASE_URL"] || !secretVars["DATABASE_URL"] || !known["FOSSIL_TOKEN"] {
		t.Fatalf("reading the variables from cmd found %d names and %d secrets, without DATABASE_URL or FOSSIL_TOKEN: has cmd/config.go changed its shape?", len(known), len(secretVars))
	}
	return known
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// probeBudget is how long a probe may fail before it gives up (Kubernetes'
// defaults: every 10 s, 3 failures).
func probeBudget(p *corev1.Probe) time.Duration {
	period, failures := p.PeriodSeconds, p.FailureThreshold
	if period == 0 {
		period = 10
	}
	if failures == 0 {
		failures = 3
	}
	return time.Duration(period*failures+p.InitialDelaySeconds) * time.Second
}

// TestStrictDecodingCatches shows that the check fails on the mistakes it
// is for: each mutation of the Deployment must fail to decode.
func TestStrictDecodingCatches(t *testing.T) {
	orig := string(readFile(t, "kubernetes/base/deployment.yaml"))
	var ok appsv1.Deployment
	if err := yaml.UnmarshalStrict([]byte(orig), &ok); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, from, to string }{
		{"MisspeltField", "readinessProbe:", "readinesProbe:"},
		{"MisplacedField", "      terminationGracePeriodSeconds: 30", "      terminationGracePeriodSeconds: 30\n      periodSeconds: 5"},
		{"WrongType", "replicas: 3", "replicas: three"},
		{"DuplicateKey", "      enableServiceLinks: false", "      enableServiceLinks: false\n      enableServiceLinks: true"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(orig, tt.from) {
				t.Fatalf("deployment.yaml no longer holds %q: update the test", tt.from)
			}
			var d appsv1.Deployment
			if err := yaml.UnmarshalStrict([]byte(strings.Replace(orig, tt.from, tt.to, 1)), &d); err == nil {
				t.Fatalf("%s decoded without an error", tt.name)
			}
		})
	}
}
