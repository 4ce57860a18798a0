package vuln

import (
	"fmt"
	"time"
)

// NVDRecord is what Stent takes from the NVD CVE API 2.0: the CVSS scores
// and the publication date of a CVE.
type NVDRecord struct {
	ID        string
	Published time.Time
	Scores    []Score
}

type nvdMetric struct {
	Source   string `json:"source"`
	Type     string `json:"type"`
	CVSSData *struct {
		Version      string `json:"version"`
		VectorString string `json:"vectorString"`
	} `json:"cvssData"`
}

type nvdJSON struct {
	Format          string `json:"format"`
	Version         string `json:"version"`
	TotalResults    *int   `json:"totalResults"`
	StartIndex      int    `json:"startIndex"`
	ResultsPerPage  int    `json:"resultsPerPage"`
	Vulnerabilities []struct {
		CVE *struct {
			ID        string `json:"id"`
			Published string `json:"published"`
			Metrics   struct {
				V31 []nvdMetric `json:"cvssMetricV31"`
				V30 []nvdMetric `json:"cvssMetricV30"`
				V40 []nvdMetric `json:"cvssMetricV40"`
			} `json:"metrics"`
		} `json:"cve"`
	} `json:"vulnerabilities"`
}

// NVDPage is one parsed response of the NVD CVE API 2.0.
type NVDPage struct {
	Records        []*NVDRecord
	TotalResults   int
	StartIndex     int
	ResultsPerPage int
}

// ParseNVD parses one NVD CVE API 2.0 response (or a file saved from one).
func ParseNVD(file string, data []byte) (*NVDPage, error) {
	var doc nvdJSON
	if err := strictJSON(data, &doc); err != nil {
		return nil, jsonError(file, data, err)
	}
	if doc.Format != "NVD_CVE" {
		if doc.Format == "" {
			return nil, missing(file, "format")
		}
		return nil, &ParseError{File: file, Field: "format", Err: fmt.Errorf("want NVD_CVE, got %q", doc.Format)}
	}
	if doc.Vulnerabilities == nil {
		return nil, missing(file, "vulnerabilities")
	}
	page := &NVDPage{StartIndex: doc.StartIndex, ResultsPerPage: doc.ResultsPerPage, TotalResults: len(doc.Vulnerabilities)}
	if doc.TotalResults != nil {
		page.TotalResults = *doc.TotalResults
	}
	for i, v := range doc.Vulnerabilities {
		field := fmt.Sprintf("vulnerabilities[%d].cve", i)
		if v.CVE == nil {
			return nil, missing(file, field)
		}
		if v.CVE.ID == "" {
			return nil, missing(file, field+".id")
		}
		if !cveIDPattern.MatchString(v.CVE.ID) {
			return nil, &ParseError{File: file, Field: field + ".id", Err: fmt.Errorf("%q is not a CVE id", v.CVE.ID)}
		}
		rec := &NVDRecord{ID: v.CVE.ID}
		if v.CVE.Published != "" {
			t, err := parseLooseTime(v.CVE.Published)
			if err != nil {
				return nil, &ParseError{File: file, Field: field + ".published", Err: err}
			}
			rec.Published = t
		}
		for _, group := range []struct {
			name string
			ms   []nvdMetric
		}{{"cvssMetricV31", v.CVE.Metrics.V31}, {"cvssMetricV30", v.CVE.Metrics.V30}, {"cvssMetricV40", v.CVE.Metrics.V40}} {
			name := group.name
			for j, m := range group.ms {
				mf := fmt.Sprintf("%s.metrics.%s[%d]", field, name, j)
				if m.CVSSData == nil || m.CVSSData.VectorString == "" {
					return nil, missing(file, mf+".cvssData.vectorString")
				}
				s, err := ParseCVSS(m.CVSSData.VectorString)
				if err != nil {
					return nil, &ParseError{File: file, Field: mf + ".cvssData.vectorString", Err: err}
				}
				s.Source = "nvd"
				if m.Type == "Secondary" {
					s.Source = "nvd-secondary"
				}
				rec.Scores = append(rec.Scores, s)
			}
		}
		sortScores(rec.Scores)
		page.Records = append(page.Records, rec)
	}
	return page, nil
}
