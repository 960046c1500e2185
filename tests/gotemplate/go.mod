module gl/tests/gotemplate

go 1.21
