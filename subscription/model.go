package subscription

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fossil-events/fossil/fossil"
)

// Protocols a subscription may use.
const (
	ProtocolHTTP  = "HTTP"
	ProtocolNATS  = "NATS"
	ProtocolKafka = "KAFKA"
	ProtocolSSE   = "SSE" // pull: competing consumers on /subscriptions/{id}/sse
)

// Config keys Fossil defines (api.md) and its own (documented in README).
const (
	configStreams     = "streams"
	configStartAfter  = "startafter"
	configMaxAttempts = "maxattempts"
	configAckTimeout  = "acktimeout"
	configHandshake   = "handshake"
	configPaused      = "paused"
	configMaxInFlight = "maxinflight"
)

var knownConfig = []string{configAckTimeout, configHandshake, configMaxAttempts, configMaxInFlight, configPaused, configStartAfter, configStreams}

// Defaults of the config keys.
const (
	DefaultMaxAttempts = 10
	DefaultAckTimeout  = 30 * time.Second
	DefaultMaxInFlight = 64
)

// Definition is a subscription as clients write it (CloudEvents
// Subscriptions API), without id, status and sinkcredential. It is what
// the database stores and every answer shows.
type Definition struct {
	Source           string            `json:"source,omitempty"`
	Types            []string          `json:"types,omitempty"`
	Config           map[string]string `json:"config,omitempty"`
	Filters          []json.RawMessage `json:"filters,omitempty"`
	Sink             string            `json:"sink,omitempty"`
	Protocol         string            `json:"protocol"`
	ProtocolSettings map[string]any    `json:"protocolsettings,omitempty"`
}

// Credential is the write-only sinkcredential.
type Credential struct {
	Type        string `json:"credentialtype"`
	AccessToken string `json:"accesstoken,omitempty"`
	Identity    string `json:"identity,omitempty"`
	Secret      string `json:"secret,omitempty"`
}

// Compiled is a validated definition, ready to match and deliver.
type Compiled struct {
	Def         Definition
	Credential  *Credential
	Templates   fossil.Templates // nil: every stream
	Filter      Filter           // source, types and filters ANDed
	StartAfter  *int64
	MaxAttempts int
	AckTimeout  time.Duration
	MaxInFlight int
	Handshake   bool
	Paused      bool
	// Method and Headers are the HTTP protocol settings.
	Method  string
	Headers map[string]string
	// Subject is the NATS subject; Topic the Kafka topic.
	Subject string
	Topic   string
}

var knownFields = []string{"config", "filters", "id", "protocol", "protocolsettings", "sink", "sinkcredential", "source", "status", "types"}

// ParseDefinition decodes and validates a subscription body. The id and
// status fields are ignored. It returns the definition, the credential (nil
// when absent) and the compiled form. Every error is an
// [*fossil.InvalidError] naming the field.
func ParseDefinition(body []byte) (*Compiled, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return nil, fossil.Invalid("body", "the body must be a JSON object (a subscription)")
	}
	if dec.More() {
		return nil, fossil.Invalid("body", "the body must hold one JSON object")
	}
	for k := range raw {
		if !slices.Contains(knownFields, k) {
			return nil, fossil.Invalid(k, "unknown field %q", k)
		}
	}
	var d Definition
	str := func(name string, dst *string) error {
		v, ok := raw[name]
		if !ok || string(v) == "null" {
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return fossil.Invalid(name, "%s must be a string", name)
		}
		return nil
	}
	for name, dst := range map[string]*string{"source": &d.Source, "sink": &d.Sink, "protocol": &d.Protocol} {
		if err := str(name, dst); err != nil {
			return nil, err
		}
	}
	if v, ok := raw["types"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &d.Types); err != nil {
			return nil, fossil.Invalid("types", "types must be an array of strings")
		}
		for i, t := range d.Types {
			if t == "" {
				return nil, fossil.Invalid(fmt.Sprintf("types[%d]", i), "a type must not be empty")
			}
		}
	}
	if v, ok := raw["config"]; ok && string(v) != "null" {
		var cfg map[string]json.RawMessage
		if err := json.Unmarshal(v, &cfg); err != nil {
			return nil, fossil.Invalid("config", "config must be an object of strings")
		}
		d.Config = make(map[string]string, len(cfg))
		for k, rv := range cfg {
			if !slices.Contains(knownConfig, k) {
				return nil, fossil.Invalid("config."+k, "unknown config key %q (known: %s)", k, strings.Join(knownConfig, ", "))
			}
			var s string
			if err := json.Unmarshal(rv, &s); err != nil {
				return nil, fossil.Invalid("config."+k, "config values must be strings")
			}
			d.Config[k] = s
		}
	}
	if v, ok := raw["filters"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &d.Filters); err != nil {
			return nil, fossil.Invalid("filters", "filters must be an array of filter objects")
		}
	}
	if v, ok := raw["protocolsettings"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &d.ProtocolSettings); err != nil || d.ProtocolSettings == nil {
			return nil, fossil.Invalid("protocolsettings", "protocolsettings must be an object")
		}
	}
	var cred *Credential
	if v, ok := raw["sinkcredential"]; ok && string(v) != "null" {
		cred = &Credential{}
		if err := json.Unmarshal(v, cred); err != nil {
			return nil, fossil.Invalid("sinkcredential", "sinkcredential must be an object")
		}
		switch cred.Type {
		case "ACCESSTOKEN":
			if cred.AccessToken == "" {
				return nil, fossil.Invalid("sinkcredential.accesstoken", "an ACCESSTOKEN credential needs accesstoken")
			}
		case "PLAIN":
			if cred.Identity == "" {
				return nil, fossil.Invalid("sinkcredential.identity", "a PLAIN credential needs identity")
			}
		default:
			return nil, fossil.Invalid("sinkcredential.credentialtype", "credentialtype must be ACCESSTOKEN or PLAIN")
		}
	}
	c, err := Compile(d)
	if err != nil {
		return nil, err
	}
	c.Credential = cred
	return c, nil
}

// Compile validates a definition and builds its matcher and settings.
func Compile(d Definition) (*Compiled, error) {
	c := &Compiled{Def: d, MaxAttempts: DefaultMaxAttempts, AckTimeout: DefaultAckTimeout, MaxInFlight: DefaultMaxInFlight, Handshake: true}
	switch d.Protocol {
	case ProtocolHTTP, ProtocolNATS, ProtocolKafka, ProtocolSSE:
	case "":
		return nil, fossil.Invalid("protocol", "protocol is required: HTTP, NATS, KAFKA or SSE")
	default:
		return nil, fossil.Invalid("protocol", "unknown protocol %q: use HTTP, NATS, KAFKA or SSE (upper case)", d.Protocol)
	}
	if err := c.checkSink(); err != nil {
		return nil, err
	}
	if err := c.checkSettings(); err != nil {
		return nil, err
	}
	if err := c.checkConfig(); err != nil {
		return nil, err
	}
	var parts []Filter
	if d.Source != "" {
		parts = append(parts, exactFilter{attrs: map[string]string{"source": d.Source}})
	}
	if len(d.Types) > 0 {
		parts = append(parts, typesFilter(d.Types))
	}
	for i, raw := range d.Filters {
		f, err := parseFilter(fmt.Sprintf("filters[%d]", i), raw)
		if err != nil {
			return nil, err
		}
		parts = append(parts, f)
	}
	c.Filter = allFilter(parts)
	return c, nil
}

func (c *Compiled) checkSink() error {
	d := c.Def
	if d.Sink == "" {
		if d.Protocol == ProtocolSSE {
			return nil
		}
		return fossil.Invalid("sink", "sink is required (an absolute URI)")
	}
	u, err := url.Parse(d.Sink)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return fossil.Invalid("sink", "sink must be an absolute URI with a host")
	}
	want := map[string][]string{
		ProtocolHTTP:  {"http", "https"},
		ProtocolNATS:  {"nats"},
		ProtocolKafka: {"kafka"},
	}[d.Protocol]
	if want != nil && !slices.Contains(want, u.Scheme) {
		return fossil.Invalid("sink", "a %s sink must use the scheme %s", d.Protocol, strings.Join(want, " or "))
	}
	if (d.Protocol == ProtocolNATS || d.Protocol == ProtocolKafka) && u.Port() == "" {
		return fossil.Invalid("sink", "a %s sink must be %s://host:port", d.Protocol, want[0])
	}
	return nil
}

func (c *Compiled) checkSettings() error {
	known := map[string][]string{
		ProtocolHTTP:  {"headers", "method"},
		ProtocolNATS:  {"subject"},
		ProtocolKafka: {"acks", "clientid", "partitionkeyextractor", "topicname"},
		ProtocolSSE:   {},
	}[c.Def.Protocol]
	ps := c.Def.ProtocolSettings
	for k := range ps {
		if !slices.Contains(known, k) {
			return fossil.Invalid("protocolsettings."+k, "unknown %s protocol setting %q", c.Def.Protocol, k)
		}
	}
	str := func(k string) (string, error) {
		v, ok := ps[k]
		if !ok || v == nil {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fossil.Invalid("protocolsettings."+k, "%s must be a string", k)
		}
		return s, nil
	}
	switch c.Def.Protocol {
	case ProtocolHTTP:
		m, err := str("method")
		if err != nil {
			return err
		}
		switch strings.ToUpper(m) {
		case "":
			c.Method = "POST"
		case "POST", "PUT", "PATCH":
			c.Method = strings.ToUpper(m)
		default:
			return fossil.Invalid("protocolsettings.method", "method must be POST, PUT or PATCH")
		}
		if v, ok := ps["headers"]; ok && v != nil {
			hm, ok := v.(map[string]any)
			if !ok {
				return fossil.Invalid("protocolsettings.headers", "headers must be an object of strings")
			}
			c.Headers = make(map[string]string, len(hm))
			for k, hv := range hm {
				s, ok := hv.(string)
				loc := "protocolsettings.headers." + k
				if !ok {
					return fossil.Invalid(loc, "header values must be strings")
				}
				if !validHeaderName(k) || strings.ContainsAny(s, "\r\n\x00") {
					return fossil.Invalid(loc, "not a valid HTTP header")
				}
				lk := strings.ToLower(k)
				if strings.HasPrefix(lk, "ce-") || lk == "authorization" || lk == "content-type" || lk == "content-length" || lk == "host" {
					return fossil.Invalid(loc, "header %q cannot be set: Fossil sends it", k)
				}
				c.Headers[k] = s
			}
		}
	case ProtocolNATS:
		s, err := str("subject")
		if err != nil {
			return err
		}
		if s == "" || strings.ContainsAny(s, " \t\r\n*>") {
			return fossil.Invalid("protocolsettings.subject", "a NATS subscription needs a subject without spaces or wildcards")
		}
		c.Subject = s
	case ProtocolKafka:
		for _, k := range []string{"acks", "clientid", "partitionkeyextractor"} {
			if _, err := str(k); err != nil {
				return err
			}
		}
		s, err := str("topicname")
		if err != nil {
			return err
		}
		if s == "" {
			return fossil.Invalid("protocolsettings.topicname", "a KAFKA subscription needs topicname")
		}
		c.Topic = s
	}
	return nil
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		ch := k[i]
		if ch <= ' ' || ch >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", ch) >= 0 {
			return false
		}
	}
	return true
}

func (c *Compiled) checkConfig() error {
	cfg := c.Def.Config
	if v, ok := cfg[configStreams]; ok {
		raws := strings.Fields(v)
		if len(raws) == 0 {
			return fossil.Invalid("config.streams", "streams must hold at least one stream template")
		}
		ts, err := fossil.ParseTemplates("config.streams", raws)
		if err != nil {
			return err
		}
		c.Templates = ts
	}
	if v, ok := cfg[configStartAfter]; ok {
		n, err := fossil.ParseEventNumber("config.startafter", v)
		if err != nil {
			return err
		}
		c.StartAfter = &n
	}
	if v, ok := cfg[configMaxAttempts]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return fossil.Invalid("config.maxattempts", "maxattempts must be an integer from 1 to 1000")
		}
		c.MaxAttempts = n
	}
	if v, ok := cfg[configAckTimeout]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Millisecond || d > time.Hour {
			return fossil.Invalid("config.acktimeout", "acktimeout must be a Go duration from 1ms to 1h, such as 30s")
		}
		c.AckTimeout = d
	}
	if v, ok := cfg[configMaxInFlight]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1024 {
			return fossil.Invalid("config.maxinflight", "maxinflight must be an integer from 1 to 1024")
		}
		c.MaxInFlight = n
	}
	if v, ok := cfg[configHandshake]; ok {
		switch v {
		case "on":
		case "off":
			c.Handshake = false
		default:
			return fossil.Invalid("config.handshake", `handshake must be "on" or "off"`)
		}
	}
	if v, ok := cfg[configPaused]; ok {
		switch v {
		case "true":
			c.Paused = true
		case "false":
		default:
			return fossil.Invalid("config.paused", `paused must be "true" or "false"`)
		}
	}
	return nil
}
