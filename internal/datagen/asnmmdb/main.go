// Command asnmmdb turns the ip-location-db ASN CSV files (start,end,asn,org;
// npm @ip-location-db/asn) into one MaxMind DB that the geoip package reads.
//
// Records use the GeoLite2-ASN field names (autonomous_system_number,
// autonomous_system_organization), so an operator can replace the generated
// file with a GeoLite2-ASN, DB-IP ASN or IPinfo-compatible ASN mmdb.
//
//	go run ./internal/datagen/asnmmdb -in asn-ipv4.csv -in asn-ipv6.csv -out asn.mmdb
package main

import (
	"bufio"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"go4.org/netipx"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var ins multiFlag
	flag.Var(&ins, "in", "input CSV (start,end,asn,org); repeat for IPv4 and IPv6")
	out := flag.String("out", "", "output .mmdb path")
	flag.Parse()
	if len(ins) == 0 || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	start := time.Now()
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType: "Moat-ASN",
		Description: map[string]string{
			"en": "ASN data from ip-location-db (RouteViews, DB-IP ASN Lite, NRO; CC BY 4.0)",
		},
		RecordSize: 28,
		// The CSV contains reserved ranges such as 192.88.99.0/24 (6to4 relay).
		IncludeReservedNetworks: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	var total, skipped int
	for _, in := range ins {
		n, s, err := load(tree, in)
		if err != nil {
			log.Fatalf("%s: %v", in, err)
		}
		total += n
		skipped += s
	}
	tmp := *out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		log.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := tree.WriteTo(w); err != nil {
		log.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
	if err := os.Rename(tmp, *out); err != nil {
		log.Fatal(err)
	}
	log.Printf("asnmmdb: %d ranges (%d skipped) -> %s in %s", total, skipped, *out, time.Since(start).Round(time.Millisecond))
}

// load inserts every row of one CSV file. Rows that cannot be inserted
// because they fall in a range mmdbwriter aliases to IPv4 (::ffff:0:0/96,
// 2002::/16, ...) are skipped and counted: the IPv4 rows already cover them.
func load(tree *mmdbwriter.Tree, path string) (n, skipped int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	r := csv.NewReader(bufio.NewReaderSize(f, 1<<20))
	r.FieldsPerRecord = 4
	r.ReuseRecord = true
	orgs := map[string]mmdbtype.String{}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, skipped, err
		}
		lo, err1 := netip.ParseAddr(rec[0])
		hi, err2 := netip.ParseAddr(rec[1])
		asn, err3 := strconv.ParseUint(rec[2], 10, 32)
		if err1 != nil || err2 != nil || err3 != nil {
			return n, skipped, fmt.Errorf("line %d: bad row %q", n+skipped+1, rec)
		}
		org, ok := orgs[rec[3]]
		if !ok {
			org = mmdbtype.String(strings.Clone(rec[3]))
			orgs[string(org)] = org
		}
		rng := netipx.IPRangeFrom(lo, hi)
		if !rng.IsValid() {
			return n, skipped, fmt.Errorf("line %d: invalid range %s-%s", n+skipped+1, lo, hi)
		}
		data := mmdbtype.Map{
			"autonomous_system_number":       mmdbtype.Uint32(asn),
			"autonomous_system_organization": org,
		}
		for _, p := range rng.Prefixes() {
			if err := tree.Insert(netipx.PrefixIPNet(p), data); err != nil {
				if strings.Contains(err.Error(), "aliased") {
					skipped++
					continue
				}
				return n, skipped, fmt.Errorf("line %d: %s: %w", n+skipped+1, p, err)
			}
		}
		n++
	}
	return n, skipped, nil
}
