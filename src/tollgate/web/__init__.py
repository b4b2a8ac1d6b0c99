"""Server-rendered pages: the user portal and the admin console, on the API's services."""
