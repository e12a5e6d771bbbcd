module example.com/ko-matrix-app

go 1.21
