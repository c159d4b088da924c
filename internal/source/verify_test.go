package source

import (
	"os"
	"path/filepath"
	"testing"
)

func FuzzLoadKeyring(f *testing.F) {
	f.Add("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQENBF\n-----END PGP PUBLIC KEY BLOCK-----\n")
	f.Add("")
	f.Add("not a key")
	f.Fuzz(func(t *testing.T, content string) {
		file := filepath.Join(t.TempDir(), "keys.asc")
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		keyring, err := loadKeyring(file)
		if err == nil && keyring == "" {
			t.Error("an empty keyring was accepted")
		}
	})
}
