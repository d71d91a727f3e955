// Package codec is metalpower's optional payload encryption: an AES-256-GCM
// PayloadCodec for every payload the Temporal SDK writes (workflow and
// activity inputs and results, signals, queries, memos) and, through the
// failure converter, for failure messages and stack traces; and the codec
// server (POST /encode, /decode) that lets the Temporal Web UI and
// `temporal --codec-endpoint` show them to authorised users.
//
// Each encrypted payload names its key in the metadata
// ("encryption-key-id"), so a key can be rotated: the newest key encrypts,
// the older keys stay configured to decrypt what they wrote.
package codec

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
)

const (
	// MetadataEncryptedEncoding is the "encoding" metadata of an encrypted payload.
	MetadataEncryptedEncoding = "binary/encrypted"
	// MetadataKeyID is the metadata naming the key that encrypted a payload.
	MetadataKeyID = "encryption-key-id"
	// KeySize is the length of an AES-256 key in bytes.
	KeySize = 32
)

// Keys are the encryption keys: Current encrypts, every key in ByID
// (Current included) decrypts.
type Keys struct {
	Current string
	ByID    map[string][]byte
}

// ParseKeys reads keys written as "k2:<base64>,k1:<base64>": comma-separated
// <key ID>:<base64 of 32 bytes> entries, the first being the current key.
// Errors name the bad entry by position and key ID, never the key material.
func ParseKeys(s string) (Keys, error) {
	if strings.TrimSpace(s) == "" {
		return Keys{}, errors.New("payload encryption keys: empty (want <key-id>:<base64 32-byte key>[,<older key-id>:<base64 key>...])")
	}
	k := Keys{ByID: map[string][]byte{}}
	for i, entry := range strings.Split(s, ",") {
		n := i + 1
		entry = strings.TrimSpace(entry)
		if entry == "" {
			return Keys{}, fmt.Errorf("payload encryption keys: entry %d is empty", n)
		}
		id, b64, ok := strings.Cut(entry, ":")
		id = strings.TrimSpace(id)
		if !ok {
			return Keys{}, fmt.Errorf("payload encryption keys: entry %d is not <key-id>:<base64 key> (no ':')", n)
		}
		if id == "" {
			return Keys{}, fmt.Errorf("payload encryption keys: entry %d has an empty key ID", n)
		}
		if !validID(id) {
			// The ID may be a mistyped key: do not show it.
			return Keys{}, fmt.Errorf("payload encryption keys: entry %d: key ID must be 1-64 characters of A-Z a-z 0-9 . _ -", n)
		}
		if _, dup := k.ByID[id]; dup {
			return Keys{}, fmt.Errorf("payload encryption keys: entry %d: key ID %q appears twice", n, id)
		}
		key, err := decodeKey(strings.TrimSpace(b64))
		if err != nil {
			return Keys{}, fmt.Errorf("payload encryption keys: entry %d (key ID %q): %v", n, id, err)
		}
		k.ByID[id] = key
		if k.Current == "" {
			k.Current = id
		}
	}
	return k, nil
}

func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

// decodeKey accepts standard base64, padded or not. Its errors do not
// quote the input.
func decodeKey(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("key is empty (want base64 of 32 random bytes, e.g. `openssl rand -base64 32`)")
	}
	key, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		key, err = base64.RawStdEncoding.DecodeString(s)
	}
	if err != nil {
		return nil, errors.New("key is not valid base64 (want base64 of 32 random bytes, e.g. `openssl rand -base64 32`)")
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("key decodes to %d bytes, want %d (AES-256)", len(key), KeySize)
	}
	return key, nil
}

// Validate reports whether Current names one of the keys and every key is
// 32 bytes long.
func (k Keys) Validate() error {
	if k.Current == "" {
		return errors.New("payload encryption keys: no current key")
	}
	if _, ok := k.ByID[k.Current]; !ok {
		return fmt.Errorf("payload encryption keys: current key ID %q has no key", k.Current)
	}
	for id, key := range k.ByID {
		if len(key) != KeySize {
			return fmt.Errorf("payload encryption keys: key ID %q: key is %d bytes, want %d", id, len(key), KeySize)
		}
	}
	return nil
}

// IDs lists the key IDs, the current one first and the others sorted (for
// logs: never the keys).
func (k Keys) IDs() []string {
	var others []string
	for id := range k.ByID {
		if id != k.Current {
			others = append(others, id)
		}
	}
	slices.Sort(others)
	return append([]string{k.Current}, others...)
}

// String hides the key material, so logging Keys is harmless.
func (k Keys) String() string {
	return fmt.Sprintf("codec.Keys{Current: %q, IDs: %v}", k.Current, k.IDs())
}

// GoString hides the key material from %#v too.
func (k Keys) GoString() string { return k.String() }

type aesCodec struct {
	current string
	ids     []string
	aeads   map[string]cipher.AEAD
	err     error // invalid keys: every Encode and Decode fails with it
}

// NewCodec returns the AES-256-GCM PayloadCodec. Encode wraps each payload
// (metadata and data, serialised) with the current key and a random
// nonce; Decode picks the key by the payload's key ID and passes payloads
// that are not encrypted through unchanged (so turning encryption on does
// not break histories written before). Invalid keys make every call fail.
func NewCodec(keys Keys) converter.PayloadCodec {
	c := &aesCodec{current: keys.Current, ids: keys.IDs(), aeads: map[string]cipher.AEAD{}}
	if err := keys.Validate(); err != nil {
		c.err = err
		return c
	}
	for id, key := range keys.ByID {
		block, err := aes.NewCipher(key)
		if err != nil {
			c.err = fmt.Errorf("payload encryption key %q: %w", id, err)
			return c
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			c.err = fmt.Errorf("payload encryption key %q: %w", id, err)
			return c
		}
		c.aeads[id] = aead
	}
	return c
}

// Encode implements converter.PayloadCodec.
func (c *aesCodec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	if c.err != nil {
		return nil, c.err
	}
	aead := c.aeads[c.current]
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := p.Marshal()
		if err != nil {
			return nil, fmt.Errorf("encrypt payload: %w", err)
		}
		nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("encrypt payload: nonce: %w", err)
		}
		// The key ID is authenticated data: a payload relabelled with
		// another key ID does not decrypt.
		sealed := aead.Seal(nonce, nonce, plain, []byte(c.current))
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				converter.MetadataEncoding: []byte(MetadataEncryptedEncoding),
				MetadataKeyID:              []byte(c.current),
			},
			Data: sealed,
		}
	}
	return out, nil
}

// Decode implements converter.PayloadCodec.
func (c *aesCodec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	if c.err != nil {
		return nil, c.err
	}
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[converter.MetadataEncoding]) != MetadataEncryptedEncoding {
			out[i] = p
			continue
		}
		id := string(p.GetMetadata()[MetadataKeyID])
		aead, ok := c.aeads[id]
		if !ok {
			return nil, fmt.Errorf("decrypt payload: unknown encryption key ID %q (configured: %v)", id, c.ids)
		}
		data := p.GetData()
		if len(data) < aead.NonceSize()+aead.Overhead() {
			return nil, fmt.Errorf("decrypt payload (key ID %q): ciphertext too short", id)
		}
		plain, err := aead.Open(nil, data[:aead.NonceSize()], data[aead.NonceSize():], []byte(id))
		if err != nil {
			return nil, fmt.Errorf("decrypt payload (key ID %q): authentication failed (wrong key or tampered payload)", id)
		}
		var dec commonpb.Payload
		if err := dec.Unmarshal(plain); err != nil {
			return nil, fmt.Errorf("decrypt payload (key ID %q): %w", id, err)
		}
		out[i] = &dec
	}
	return out, nil
}

// DataConverter is the SDK's default data converter with payloads
// encrypted by NewCodec(keys). Give it to client.Options.DataConverter
// of every client (workers, starters, API) of a deployment.
func DataConverter(keys Keys) converter.DataConverter {
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), NewCodec(keys))
}

// FailureConverter moves failure messages and stack traces into the
// encoded attributes, so dc encrypts them too (the history then shows
// "Encoded failure"). Give it to client.Options.FailureConverter next to
// DataConverter.
func FailureConverter(dc converter.DataConverter) converter.FailureConverter {
	return temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{DataConverter: dc, EncodeCommonAttributes: true})
}

// Converters parses keys (the payload_encryption_keys option) and returns
// the converters for client.Options; all nil when keys is empty
// (encryption off, the SDK defaults apply).
func Converters(keys string) (converter.DataConverter, converter.FailureConverter, error) {
	if strings.TrimSpace(keys) == "" {
		return nil, nil, nil
	}
	k, err := ParseKeys(keys)
	if err != nil {
		return nil, nil, err
	}
	dc := DataConverter(k)
	return dc, FailureConverter(dc), nil
}
