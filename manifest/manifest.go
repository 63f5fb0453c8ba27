// Package manifest parses and validates module.toml, the file a module ships
// to say who it is, what it needs and which binary it runs.
//
// Parsing is strict: unknown keys, wrong types and invalid values are all
// reported at once, each with its line, so an operator fixes a manifest in
// one pass. Nothing here touches the module's binary or trusts its keys; that
// is the verify package's job.
package manifest

import "time"

// FileName is the manifest's name inside a module directory.
const FileName = "module.toml"

// ConfigFileName is the module's shipped default config in its directory.
// It is pinned by [config] in the signed view, or refused.
const ConfigFileName = "config.toml"

// Manifest is a parsed module.toml. Field names follow the seed's manifest.
type Manifest struct {
	Name        string `toml:"name" json:"name"`
	Version     string `toml:"version" json:"version"`
	EntryPoint  string `toml:"entry_point" json:"entry_point"`
	Description string `toml:"description" json:"description,omitempty"`
	Author      string `toml:"author" json:"author,omitempty"`
	// Expires, when set, bounds how long the signatures over this manifest
	// count (freeze protection). It is inside the signed view.
	Expires      *time.Time `toml:"expires" json:"expires,omitempty"`
	Capabilities []string   `toml:"capabilities" json:"capabilities,omitempty"`

	// Dependencies map a module name (or the pseudo-module "blvm-node") to a
	// semver constraint. A missing required dependency blocks the load.
	Dependencies map[string]string `toml:"dependencies" json:"dependencies,omitempty"`
	// OptionalDependencies are used when present and never block a load.
	OptionalDependencies map[string]string `toml:"optional_dependencies" json:"optional_dependencies,omitempty"`
	// ConfigSchema describes the config keys the module accepts.
	ConfigSchema map[string]string `toml:"config_schema" json:"config_schema,omitempty"`

	Binary     *Binary     `toml:"binary" json:"binary,omitempty"`
	Config     *Config     `toml:"config" json:"config,omitempty"`
	Signatures *Signatures `toml:"signatures" json:"-"`
	Payment    *Payment    `toml:"payment" json:"payment,omitempty"`

	// Path is the file the manifest was read from ("" for in-memory input).
	Path string `toml:"-" json:"-"`
	// Lines maps dotted keys ("binary.hash", "capabilities[2]") to the line
	// they were written on, for error messages.
	Lines map[string]int `toml:"-" json:"-"`
}

// Binary pins the module's executable by digest and size.
type Binary struct {
	Hash string `toml:"hash" json:"hash"` // "sha256:<64 hex>"
	Size int64  `toml:"size" json:"size"`
}

// Config pins the shipped config.toml by digest and size, as Binary pins
// the executable: the shipped defaults change what a module does (how a
// voter votes), so they are signed like the code.
type Config struct {
	Hash string `toml:"hash" json:"hash"` // "sha256:<64 hex>"
	Size int64  `toml:"size" json:"size"`
}

// Signatures holds maintainer signatures over the canonical signing view.
// Keys here are hints only: the operator's trust store decides what counts.
type Signatures struct {
	Threshold   string       `toml:"threshold" json:"threshold"`
	Maintainers []Maintainer `toml:"maintainers" json:"maintainers"`
}

// Maintainer is one signer entry in [signatures].
type Maintainer struct {
	Name      string `toml:"name" json:"name"`
	PublicKey string `toml:"public_key" json:"public_key"` // 33-byte compressed hex
	Signature string `toml:"signature" json:"signature"`   // 64-byte compact or DER hex
}

// Payment is the seed's [payment] section for paid modules.
type Payment struct {
	Required           bool   `toml:"required" json:"required"`
	PriceSats          int64  `toml:"price_sats" json:"price_sats"`
	AuthorPaymentCode  string `toml:"author_payment_code" json:"author_payment_code,omitempty"`
	CommonsPaymentCode string `toml:"commons_payment_code" json:"commons_payment_code,omitempty"`
	PaymentSignature   string `toml:"payment_signature" json:"payment_signature,omitempty"`
}
